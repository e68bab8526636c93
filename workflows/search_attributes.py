"""The search attributes that make runs findable in the Temporal UI and with `temporal workflow
list --query`: `RunStatus`, `AssistantId`, `ThreadId`, `ProjectId`, `Model` (all Keyword).
Ingestion workflows carry `VectorStoreId`, `FileId` and `ProjectId`.

The API sets them when it starts a run's workflow (a service-started run sets them itself once it
is recorded), and `RunWorkflow` keeps `RunStatus` current as the run moves.
A namespace must have them registered before workflows upsert them (an upsert of an unknown
attribute fails the workflow task): `dev` registers them; on a cluster `durable-assistants init`
does (assistants/cluster_init.py), or `temporal operator search-attribute create --name RunStatus
--type Keyword` (and so on); or set `ASSISTANTS_SEARCH_ATTRIBUTES=false`. Ids and statuses only:
never message text.
"""

from __future__ import annotations

from temporalio.common import (
    SearchAttributeKey,
    SearchAttributePair,
    SearchAttributeUpdate,
    TypedSearchAttributes,
)

RUN_STATUS = SearchAttributeKey.for_keyword("RunStatus")
ASSISTANT_ID = SearchAttributeKey.for_keyword("AssistantId")
THREAD_ID = SearchAttributeKey.for_keyword("ThreadId")
PROJECT_ID = SearchAttributeKey.for_keyword("ProjectId")
MODEL = SearchAttributeKey.for_keyword("Model")
# Ingestion workflows (`workflows/ingestion.py`): the store and the file they work on.
VECTOR_STORE_ID = SearchAttributeKey.for_keyword("VectorStoreId")
FILE_ID = SearchAttributeKey.for_keyword("FileId")

NAMES = {
    key.name: "Keyword"
    for key in (RUN_STATUS, ASSISTANT_ID, THREAD_ID, PROJECT_ID, MODEL, VECTOR_STORE_ID, FILE_ID)
}


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


def initial_attributes(
    *, assistant_id: str, thread_id: str, project_id: str, model: str
) -> TypedSearchAttributes:
    """Set with the workflow start (written with the visibility record the start creates
    anyway, so they cost no extra write)."""
    return TypedSearchAttributes(
        [
            SearchAttributePair(RUN_STATUS, "queued"),
            SearchAttributePair(ASSISTANT_ID, assistant_id),
            SearchAttributePair(THREAD_ID, thread_id),
            SearchAttributePair(PROJECT_ID, project_id),
            SearchAttributePair(MODEL, model),
        ]
    )


def ingestion_attributes(
    *, project_id: str, vector_store_id: str, file_id: str | None = None
) -> TypedSearchAttributes:
    """Set with the start of an ingestion workflow (a file's, or a batch's without `file_id`)."""
    pairs = [
        SearchAttributePair(PROJECT_ID, project_id),
        SearchAttributePair(VECTOR_STORE_ID, vector_store_id),
    ]
    if file_id is not None:
        pairs.append(SearchAttributePair(FILE_ID, file_id))
    return TypedSearchAttributes(pairs)
