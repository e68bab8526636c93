"""The search attributes that make runs findable in the Temporal UI and with `temporal workflow
list --query`: `RunStatus`, `AssistantId`, `ThreadId`, `ProjectId`, `Model` (all Keyword).

`RunWorkflow` sets them in its first workflow task and keeps `RunStatus` current as the run moves.
A namespace must have them registered before workflows upsert them (an upsert of an unknown
attribute fails the workflow task): `dev` registers them; on a cluster run, once,
`temporal operator search-attribute create --name RunStatus --type Keyword` (and so on), or set
`ASSISTANTS_SEARCH_ATTRIBUTES=false`. Ids and statuses only: never message text.
"""

from __future__ import annotations

from temporalio.common import SearchAttributeKey, SearchAttributeUpdate

RUN_STATUS = SearchAttributeKey.for_keyword("RunStatus")
ASSISTANT_ID = SearchAttributeKey.for_keyword("AssistantId")
THREAD_ID = SearchAttributeKey.for_keyword("ThreadId")
PROJECT_ID = SearchAttributeKey.for_keyword("ProjectId")
MODEL = SearchAttributeKey.for_keyword("Model")

NAMES = {key.name: "Keyword" for key in (RUN_STATUS, ASSISTANT_ID, THREAD_ID, PROJECT_ID, MODEL)}


def run_attributes(
    *, status: str, assistant_id: str, thread_id: str, project_id: str, model: str
) -> list[SearchAttributeUpdate[str]]:
    return [
        RUN_STATUS.value_set(status),
        ASSISTANT_ID.value_set(assistant_id),
        THREAD_ID.value_set(thread_id),
        PROJECT_ID.value_set(project_id),
        MODEL.value_set(model),
    ]
