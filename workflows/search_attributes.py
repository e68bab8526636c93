"""The search attributes that make runs findable in the Temporal UI and with `temporal workflow
list --query`: `RunStatus`, `AssistantId`, `ThreadId`, `ProjectId`, `Model` (all Keyword).

`RunWorkflow` sets them in its first workflow task and keeps `RunStatus` current as the run moves.
A namespace must have them registered before workflows upsert them (an upsert of an unknown
attribute fails the workflow task): `dev` registers them; on a cluster run, once,
`temporal operator search-attribute create --name RunStatus --type Keyword` (and so on), or set
`ASSISTANTS_SEARCH_ATTRIBUTES=false`. Ids and statuses only: never message text.
"""

from __future__ import annotations

from temporalio.common import SearchAttributeKey, SearchAttributePair, TypedSearchAttributes

RUN_STATUS = SearchAttributeKey.for_keyword("RunStatus")
ASSISTANT_ID = SearchAttributeKey.for_keyword("AssistantId")
THREAD_ID = SearchAttributeKey.for_keyword("ThreadId")
PROJECT_ID = SearchAttributeKey.for_keyword("ProjectId")
MODEL = SearchAttributeKey.for_keyword("Model")

NAMES = {key.name: "Keyword" for key in (RUN_STATUS, ASSISTANT_ID, THREAD_ID, PROJECT_ID, MODEL)}


def run_attributes(
    *, status: str, assistant_id: str, thread_id: str, project_id: str, model: str
) -> TypedSearchAttributes:
    return TypedSearchAttributes(
        [
            SearchAttributePair(RUN_STATUS, status),
            SearchAttributePair(ASSISTANT_ID, assistant_id),
            SearchAttributePair(THREAD_ID, thread_id),
            SearchAttributePair(PROJECT_ID, project_id),
            SearchAttributePair(MODEL, model),
        ]
    )
