"""Malformed requests: each one is answered with the exact status and an OpenAI-shaped error body
(`{"error": {"message", "type", "param", "code"}}`), and none of them writes anything.

"Nothing written" is checked twice around every request: through the API (the assistants list, the
thread, its messages, runs and the completed run's steps) and in the database itself (the row count
of every table, which also catches a half-written object no list shows, such as a thread).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Literal

import httpx
import openai
import pytest
from sqlalchemy import func, select

from assistants.store.db import Database
from assistants.store.tables import metadata as schema
from assistants.testing.scripted_model import Reply, ScriptedModel
from tests.support.contract import validate
from tests.support.stack import Stack

Headers = Literal["ok", "no_auth", "wrong_key", "no_beta"]
NO_BODY = object()


# --- the world the bad requests aim at ------------------------------------------------------------


class RowCounts:
    """Row counts of every table, read on a thread of its own (with its own event loop, so the
    session's asyncio loop is left alone)."""

    def __init__(self, database_url: str) -> None:
        self._url = database_url
        self._executor = ThreadPoolExecutor(max_workers=1)
        self._local = threading.local()

    def _runner(self) -> asyncio.Runner:
        runner: asyncio.Runner | None = getattr(self._local, "runner", None)
        if runner is None:
            runner = self._local.runner = asyncio.Runner()
            self._local.db = Database(self._url)
        return runner

    async def _count(self) -> dict[str, int]:
        db: Database = self._local.db
        return await db.read(
            lambda conn: {
                table.name: int(conn.scalar(select(func.count()).select_from(table)) or 0)
                for table in schema.sorted_tables
            }
        )

    def _read(self) -> dict[str, int]:
        return self._runner().run(self._count())

    def __call__(self) -> dict[str, int]:
        return self._executor.submit(self._read).result(timeout=30)

    def _close(self) -> None:
        runner: asyncio.Runner | None = getattr(self._local, "runner", None)
        if runner is not None:
            runner.run(self._local.db.dispose())
            runner.close()

    def close(self) -> None:
        self._executor.submit(self._close).result(timeout=30)
        self._executor.shutdown()


@dataclass
class World:
    stack: Stack
    rows: RowCounts
    ids: dict[str, str] = field(default_factory=dict)

    def snapshot(self, http: httpx.Client, thread_id: str) -> dict[str, Any]:
        def get(path: str, **params: Any) -> Any:
            response = http.get(path, params=params)
            assert response.status_code == 200, response.text
            return response.json()

        run_id = self.ids["run"]
        return {
            "assistants": get("/assistants", limit=100)["data"],
            "thread": get(f"/threads/{thread_id}"),
            "messages": get(f"/threads/{thread_id}/messages", limit=100)["data"],
            "runs": get(f"/threads/{thread_id}/runs", limit=100)["data"],
            "steps": get(f"/threads/{self.ids['thread']}/runs/{run_id}/steps")["data"],
            "rows": self.rows(),
        }


@pytest.fixture(scope="module")
def world(stack: Stack, model: ScriptedModel) -> Iterator[World]:
    """An assistant (with one function tool), a thread with metadata, a user message and a
    completed run with its step: built once per module per backend."""
    model.reset()  # nothing left over from another module answers our run
    client = stack.client()
    assistant = client.beta.assistants.create(
        model="gpt-4o",
        name="bad input target",
        tools=[{"type": "function", "function": {"name": "get_weather", "parameters": {}}}],
    )
    thread = client.beta.threads.create(metadata={"purpose": "bad input"})
    message = client.beta.threads.messages.create(thread.id, role="user", content="Hello?")
    run = client.beta.threads.runs.create_and_poll(thread_id=thread.id, assistant_id=assistant.id)
    assert run.status == "completed", run.last_error
    steps = client.beta.threads.runs.steps.list(run.id, thread_id=thread.id)
    rows = RowCounts(stack.database_url)
    world = World(
        stack=stack,
        rows=rows,
        ids={
            "asst": assistant.id,
            "thread": thread.id,
            "msg": message.id,
            "run": run.id,
            "step": steps.data[0].id,
        },
    )
    try:
        yield world
    finally:
        rows.close()


# --- the table ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    name: str
    method: str
    path: str  # `{asst}`, `{thread}`, `{msg}`, `{run}`, `{step}`, `{locked}`, `{active}` filled in
    status: int
    message: str  # a substring of the error message (templated like `path`)
    param: str | None = None
    code: str | None = None
    json: Any = NO_BODY
    content: bytes | None = None
    params: dict[str, str] | None = None
    headers: Headers = "ok"
    locked: bool = False  # the thread `{locked}` has the active run `{active}`
    type: str = "invalid_request_error"
    send_headers: dict[str, str] | None = None  # extra request headers
    allow: str | None = None  # the `Allow` header a 405 must carry


def _fill(value: Any, ids: dict[str, str]) -> Any:
    if isinstance(value, str):
        return value.format_map(ids) if "{" in value else value
    if isinstance(value, dict):
        return {key: _fill(item, ids) for key, item in value.items()}
    if isinstance(value, list):
        return [_fill(item, ids) for item in value]
    return value


def _fill_bytes(content: bytes, ids: dict[str, str]) -> bytes:
    """Raw bodies (JSON the SDK cannot send) name objects as `{asst}` etc. too."""
    for key, value in ids.items():
        content = content.replace(b"{%s}" % key.encode(), value.encode())
    return content


def _functions(n: int) -> list[dict[str, Any]]:
    return [{"type": "function", "function": {"name": f"fn_{i}"}} for i in range(n)]


SEVENTEEN_KEYS = {f"key_{i}": "v" for i in range(17)}
LONG_KEY = {"k" * 65: "v"}
LONG_VALUE = {"k": "v" * 513}
METADATA_TARGETS = [
    ("assistant_create", "POST", "/assistants", {"model": "gpt-4o"}),
    ("thread_create", "POST", "/threads", {}),
    ("message_create", "POST", "/threads/{thread}/messages", {"role": "user", "content": "x"}),
    ("run_update", "POST", "/threads/{thread}/runs/{run}", {}),
]
METADATA_CASES = [
    Case(
        f"{target}-metadata-{what}",
        method,
        path,
        400,
        message,
        param="metadata",
        code="invalid_value",
        json={**base, "metadata": metadata},
    )
    for target, method, path, base in METADATA_TARGETS
    for what, metadata, message in [
        ("17-keys", SEVENTEEN_KEYS, "Expected an object with at most 16 properties"),
        ("65-char-key", LONG_KEY, "Expected a key with at most 64 characters"),
        ("513-char-value", LONG_VALUE, "Expected a string with at most 512 characters"),
    ]
]

CASES = [
    # --- unknown ids: 404, exactly as OpenAI words it ---
    Case("get-unknown-assistant", "GET", "/assistants/asst_nope", 404,
         "No assistant found with id 'asst_nope'."),
    Case("modify-unknown-assistant", "POST", "/assistants/asst_nope", 404,
         "No assistant found with id 'asst_nope'.", json={"name": "x"}),
    Case("delete-unknown-assistant", "DELETE", "/assistants/asst_nope", 404,
         "No assistant found with id 'asst_nope'."),
    Case("get-unknown-thread", "GET", "/threads/thread_nope", 404,
         "No thread found with id 'thread_nope'."),
    Case("modify-unknown-thread", "POST", "/threads/thread_nope", 404,
         "No thread found with id 'thread_nope'.", json={"metadata": {"a": "b"}}),
    Case("delete-unknown-thread", "DELETE", "/threads/thread_nope", 404,
         "No thread found with id 'thread_nope'."),
    Case("message-on-unknown-thread", "POST", "/threads/thread_nope/messages", 404,
         "No thread found with id 'thread_nope'.", json={"role": "user", "content": "hi"}),
    Case("list-messages-unknown-thread", "GET", "/threads/thread_nope/messages", 404,
         "No thread found with id 'thread_nope'."),
    Case("get-unknown-message", "GET", "/threads/{thread}/messages/msg_nope", 404,
         "No message found with id 'msg_nope'."),
    Case("modify-unknown-message", "POST", "/threads/{thread}/messages/msg_nope", 404,
         "No message found with id 'msg_nope'.", json={"metadata": {"a": "b"}}),
    Case("delete-unknown-message", "DELETE", "/threads/{thread}/messages/msg_nope", 404,
         "No message found with id 'msg_nope'."),
    Case("get-message-via-unknown-thread", "GET", "/threads/thread_nope/messages/{msg}", 404,
         "No thread found with id 'thread_nope'."),
    Case("get-unknown-run", "GET", "/threads/{thread}/runs/run_nope", 404,
         "No run found with id 'run_nope'."),
    Case("get-run-via-unknown-thread", "GET", "/threads/thread_nope/runs/{run}", 404,
         "No thread found with id 'thread_nope'."),
    Case("modify-unknown-run", "POST", "/threads/{thread}/runs/run_nope", 404,
         "No run found with id 'run_nope'.", json={"metadata": {"a": "b"}}),
    Case("cancel-unknown-run", "POST", "/threads/{thread}/runs/run_nope/cancel", 404,
         "No run found with id 'run_nope'."),
    Case("list-runs-unknown-thread", "GET", "/threads/thread_nope/runs", 404,
         "No thread found with id 'thread_nope'."),
    Case("run-on-unknown-thread", "POST", "/threads/thread_nope/runs", 404,
         "No thread found with id 'thread_nope'.", json={"assistant_id": "{asst}"}),
    Case("run-with-unknown-assistant", "POST", "/threads/{thread}/runs", 404,
         "No assistant found with id 'asst_nope'.", param="assistant_id",
         json={"assistant_id": "asst_nope"}),
    Case("thread-and-run-unknown-assistant", "POST", "/threads/runs", 404,
         "No assistant found with id 'asst_nope'.", param="assistant_id",
         json={"assistant_id": "asst_nope", "thread": {"messages": [
             {"role": "user", "content": "hi"}]}}),
    Case("list-steps-unknown-run", "GET", "/threads/{thread}/runs/run_nope/steps", 404,
         "No run found with id 'run_nope'."),
    Case("get-unknown-step", "GET", "/threads/{thread}/runs/{run}/steps/step_nope", 404,
         "No run step found with id 'step_nope'."),
    # --- wrong JSON types ---
    Case("model-as-number", "POST", "/assistants", 400,
         "Invalid type for 'model': expected a string, but got an integer instead.",
         param="model", code="invalid_type", json={"model": 4}),
    Case("temperature-as-string", "POST", "/assistants", 400,
         "Invalid type for 'temperature': expected a decimal, but got a string instead.",
         param="temperature", code="invalid_type", json={"model": "gpt-4o", "temperature": "0.5"}),
    Case("metadata-as-list", "POST", "/threads", 400,
         "Invalid type for 'metadata': expected an object, but got an array instead.",
         param="metadata", code="invalid_type", json={"metadata": ["a", "b"]}),
    Case("metadata-value-as-number", "POST", "/assistants", 400,
         "Invalid type for 'metadata.n': expected a string, but got an integer instead.",
         param="metadata.n", code="invalid_type", json={"model": "gpt-4o", "metadata": {"n": 1}}),
    Case("tools-as-object", "POST", "/assistants", 400,
         "Invalid type for 'tools': expected an array, but got an object instead.",
         param="tools", code="invalid_type",
         json={"model": "gpt-4o", "tools": {"type": "code_interpreter"}}),
    Case("content-as-number", "POST", "/threads/{thread}/messages", 400,
         "Invalid type for 'content': expected a string, but got an integer instead.",
         param="content", code="invalid_type", json={"role": "user", "content": 42}),
    Case("stream-as-string", "POST", "/threads/{thread}/runs", 400,
         "Invalid type for 'stream': expected a boolean, but got a string instead.",
         param="stream", code="invalid_type", json={"assistant_id": "{asst}", "stream": "yes"}),
    Case("nested-message-content-as-number", "POST", "/threads/runs", 400,
         "Invalid type for 'thread.messages[0].content'", param="thread.messages[0].content",
         code="invalid_type",
         json={"assistant_id": "{asst}", "thread": {"messages": [{"role": "user", "content": 1}]}}),
    # --- metadata limits (17 keys / 65-char key / 513-char value, on four endpoints) ---
    *METADATA_CASES,
    Case("nested-message-metadata-too-long", "POST", "/threads", 400,
         "Expected a string with at most 512 characters", param="messages[0].metadata",
         code="invalid_value",
         json={"messages": [{"role": "user", "content": "x", "metadata": LONG_VALUE}]}),
    # --- list parameters ---
    Case("limit-0", "GET", "/assistants", 400,
         "Invalid 'limit': integer below minimum value. Expected a value >= 1, but got 0 instead.",
         param="limit", code="integer_below_min_value", params={"limit": "0"}),
    Case("limit-101", "GET", "/threads/{thread}/messages", 400,
         "Invalid 'limit': integer above maximum value. Expected a value <= 100", param="limit",
         code="integer_above_max_value", params={"limit": "101"}),
    Case("limit-abc", "GET", "/threads/{thread}/runs", 400, "Invalid 'limit'", param="limit",
         code="invalid_type", params={"limit": "abc"}),
    Case("order-sideways", "GET", "/assistants", 400,
         "Invalid value: 'sideways'. Supported values are: 'asc' and 'desc'.", param="order",
         code="invalid_value", params={"order": "sideways"}),
    Case("after-unknown-id", "GET", "/threads/{thread}/messages", 400, "'msg_nope'",
         param="after", params={"after": "msg_nope"}),
    Case("before-unknown-id", "GET", "/threads/{thread}/runs/{run}/steps", 400, "'step_nope'",
         param="before", params={"before": "step_nope"}),
    # --- tools ---
    Case("tool-type-browser", "POST", "/assistants", 400,
         "Invalid value: 'browser'. Supported values are: 'code_interpreter', 'function', and "
         "'file_search'.", param="tools[0].type", code="invalid_value",
         json={"model": "gpt-4o", "tools": [{"type": "browser"}]}),
    Case("tool-without-type", "POST", "/assistants", 400,
         "Missing required parameter: 'tools[0].type'.", param="tools[0].type",
         json={"model": "gpt-4o", "tools": [{"function": {"name": "f"}}]}),
    Case("function-without-name", "POST", "/assistants", 400,
         "Missing required parameter: 'tools[0].function.name'.", param="tools[0].function.name",
         json={"model": "gpt-4o", "tools": [{"type": "function", "function": {}}]}),
    Case("function-name-with-spaces", "POST", "/assistants", 400,
         "Invalid 'tools[0].function.name'", param="tools[0].function.name", code="invalid_value",
         json={"model": "gpt-4o", "tools": [
             {"type": "function", "function": {"name": "get the weather"}}]}),
    Case("duplicate-function-names", "POST", "/assistants", 400,
         "duplicate function name 'fn_0'", param="tools", code="invalid_value",
         json={"model": "gpt-4o", "tools": _functions(1) * 2}),
    Case("129-tools-on-assistant", "POST", "/assistants", 400,
         "Invalid 'tools': array too long. Expected an array with maximum length 128, but got an "
         "array with length 129 instead.", param="tools", code="array_above_max_length",
         json={"model": "gpt-4o", "tools": _functions(129)}),
    Case("21-tools-on-run", "POST", "/threads/{thread}/runs", 400,
         "Expected an array with maximum length 20", param="tools", code="array_above_max_length",
         json={"assistant_id": "{asst}", "tools": _functions(21)}),
    Case("file-search-max-results-100", "POST", "/assistants/{asst}", 400,
         "Expected a value <= 50, but got 100 instead.",
         param="tools[0].file_search.max_num_results", code="integer_above_max_value",
         json={"tools": [{"type": "file_search", "file_search": {"max_num_results": 100}}]}),
    Case("tool-choice-unknown-function", "POST", "/threads/{thread}/runs", 400,
         "function 'nope' is not one of the run's tools", param="tool_choice",
         json={"assistant_id": "{asst}",
               "tool_choice": {"type": "function", "function": {"name": "nope"}}}),
    Case("tool-choice-function-unnamed", "POST", "/threads/{thread}/runs", 400,
         "a function tool choice must name the function", param="tool_choice",
         code="invalid_value",
         json={"assistant_id": "{asst}", "tool_choice": {"type": "function"}}),
    Case("tool-choice-sometimes", "POST", "/threads/{thread}/runs", 400,
         "Invalid value: 'sometimes'. Supported values are: 'none', 'auto', and 'required'.",
         param="tool_choice", code="invalid_value",
         json={"assistant_id": "{asst}", "tool_choice": "sometimes"}),
    # --- value ranges and enums ---
    Case("temperature-3", "POST", "/assistants", 400,
         "Invalid 'temperature': decimal above maximum value. Expected a value <= 2, but got 3 "
         "instead.", param="temperature", code="decimal_above_max_value",
         json={"model": "gpt-4o", "temperature": 3}),
    Case("top-p-minus-1", "POST", "/threads/{thread}/runs", 400,
         "Invalid 'top_p': decimal below minimum value. Expected a value >= 0, but got -1 "
         "instead.", param="top_p", code="decimal_below_min_value",
         json={"assistant_id": "{asst}", "top_p": -1}),
    Case("max-prompt-tokens-10", "POST", "/threads/{thread}/runs", 400,
         "Invalid 'max_prompt_tokens': integer below minimum value. Expected a value >= 256, but "
         "got 10 instead.", param="max_prompt_tokens", code="integer_below_min_value",
         json={"assistant_id": "{asst}", "max_prompt_tokens": 10}),
    Case("truncation-strategy-bogus", "POST", "/threads/{thread}/runs", 400,
         "Invalid value: 'bogus'. Supported values are: 'auto' and 'last_messages'.",
         param="truncation_strategy.type", code="invalid_value",
         json={"assistant_id": "{asst}", "truncation_strategy": {"type": "bogus"}}),
    Case("response-format-bogus", "POST", "/assistants", 400, "Invalid value: 'bogus'.",
         param="response_format.type", code="invalid_value",
         json={"model": "gpt-4o", "response_format": {"type": "bogus"}}),
    Case("role-system", "POST", "/threads/{thread}/messages", 400,
         "Invalid value: 'system'. Supported values are: 'user' and 'assistant'.", param="role",
         code="invalid_value", json={"role": "system", "content": "x"}),
    Case("content-part-without-text", "POST", "/threads/{thread}/messages", 400,
         "Missing required parameter: 'content[0].text'.", param="content[0].text",
         json={"role": "user", "content": [{"type": "text"}]}),
    Case("additional-message-role-system", "POST", "/threads/{thread}/runs", 400,
         "Invalid value: 'system'.", param="additional_messages[0].role", code="invalid_value",
         json={"assistant_id": "{asst}",
               "additional_messages": [{"role": "system", "content": "x"}]}),
    Case("empty-model", "POST", "/assistants/{asst}", 400, "Invalid 'model': string too short.",
         param="model", code="string_below_min_length", json={"model": ""}),
    # --- unknown and missing arguments ---
    Case("unknown-field", "POST", "/assistants", 400, "Unknown parameter: 'foo'.", param="foo",
         code="unknown_parameter", json={"model": "gpt-4o", "foo": 1}),
    Case("unknown-field-on-run-update", "POST", "/threads/{thread}/runs/{run}", 400,
         "Unknown parameter: 'status'.", param="status", code="unknown_parameter",
         json={"status": "failed"}),
    Case("unknown-field-in-tool", "POST", "/assistants", 400,
         "Unknown parameter: 'tools[0].foo'.", param="tools[0].foo", code="unknown_parameter",
         json={"model": "gpt-4o",
               "tools": [{"type": "function", "function": {"name": "f"}, "foo": 1}]}),
    Case("unknown-field-in-function", "POST", "/assistants", 400,
         "Unknown parameter: 'tools[1].function.bar'.", param="tools[1].function.bar",
         code="unknown_parameter",
         json={"model": "gpt-4o", "tools": [{"type": "code_interpreter"},
               {"type": "function", "function": {"name": "f", "bar": True}}]}),
    Case("unknown-field-in-thread-of-run", "POST", "/threads/runs", 400,
         "Unknown parameter: 'thread.foo'.", param="thread.foo", code="unknown_parameter",
         json={"assistant_id": "{asst}", "thread": {"foo": 1}}),
    Case("unknown-field-in-content-part", "POST", "/threads/{thread}/messages", 400,
         "Unknown parameter: 'content[0].foo'.", param="content[0].foo",
         code="unknown_parameter",
         json={"role": "user", "content": [{"type": "text", "text": "x", "foo": 1}]}),
    Case("missing-model", "POST", "/assistants", 400, "Missing required parameter: 'model'.",
         param="model", json={"name": "no model"}),
    Case("missing-model-empty-body", "POST", "/assistants", 400,
         "Missing required parameter: 'model'.", param="model"),
    Case("missing-assistant-id", "POST", "/threads/{thread}/runs", 400,
         "Missing required parameter: 'assistant_id'.", param="assistant_id", json={}),
    Case("missing-role", "POST", "/threads/{thread}/messages", 400,
         "Missing required parameter: 'role'.", param="role", json={"content": "x"}),
    Case("missing-content", "POST", "/threads/{thread}/messages", 400,
         "Missing required parameter: 'content'.", param="content", json={"role": "user"}),
    Case("max-completion-tokens-over-int32", "POST", "/threads/{thread}/runs", 400,
         "Invalid 'max_completion_tokens': integer above maximum value. Expected a value <= "
         "2147483647, but got 2147483648 instead.", param="max_completion_tokens",
         code="integer_above_max_value",
         json={"assistant_id": "{asst}", "max_completion_tokens": 2**31}),
    # --- NUL characters (PostgreSQL text cannot hold them; no id contains one) ---
    Case("nul-in-name", "POST", "/assistants", 400,
         "Invalid 'name': string contains a null character", param="name", code="invalid_value",
         json={"model": "gpt-4o", "name": "bad\u0000name"}),
    Case("nul-in-message-content", "POST", "/threads/{thread}/messages", 400,
         "Invalid 'content': string contains a null character", param="content",
         code="invalid_value", json={"role": "user", "content": "a\u0000b"}),
    Case("nul-in-run-instructions", "POST", "/threads/{thread}/runs", 400,
         "Invalid 'instructions': string contains a null character", param="instructions",
         code="invalid_value", json={"assistant_id": "{asst}", "instructions": "\u0000"}),
    Case("nul-in-path-id", "DELETE", "/assistants/asst_%00x", 404,
         "Invalid URL (DELETE /v1/assistants/asst_\u0000x)"),
    Case("nul-in-cursor", "GET", "/threads/{thread}/messages", 400,
         "Invalid 'after': string contains a null character", param="after",
         code="invalid_value", params={"after": "msg_\u0000"}),
    # --- lone UTF-16 surrogates: no response could carry them (they are not Unicode text) ---
    Case("surrogate-in-metadata-value", "POST", "/assistants", 400,
         "Invalid 'metadata.k': string contains an unpaired surrogate (\\ud800)",
         param="metadata.k", code="invalid_value",
         content=b'{"model": "gpt-4o", "metadata": {"k": "a\\ud800"}}'),
    Case("surrogate-in-metadata-key", "POST", "/threads", 400,
         "Invalid 'metadata.\\udfff': string contains an unpaired surrogate",
         param="metadata.\\udfff", code="invalid_value",
         content=b'{"metadata": {"\\udfff": "v"}}'),
    Case("surrogate-in-function-parameters", "POST", "/assistants", 400,
         "string contains an unpaired surrogate",
         param="tools[0].function.parameters.properties.city.description", code="invalid_value",
         content=b'{"model": "gpt-4o", "tools": [{"type": "function", "function": {"name": "f", '
                 b'"parameters": {"type": "object", "properties": {"city": '
                 b'{"type": "string", "description": "\\ud800"}}}}}]}'),
    Case("surrogate-in-json-schema", "POST", "/assistants/{asst}", 400,
         "string contains an unpaired surrogate",
         param="response_format.json_schema.schema.enum[1]", code="invalid_value",
         content=b'{"response_format": {"type": "json_schema", "json_schema": {"name": "s", '
                 b'"schema": {"enum": ["ok", "\\udc00\\ud800"]}}}}'),
    Case("surrogate-in-tool-resources", "POST", "/threads", 400,
         "string contains an unpaired surrogate",
         param="tool_resources.code_interpreter.file_ids[0]", code="invalid_value",
         content=b'{"tool_resources": {"code_interpreter": {"file_ids": ["file_\\ud83d"]}}}'),
    Case("surrogate-in-content-part", "POST", "/threads/{thread}/messages", 400,
         "string contains an unpaired surrogate", param="content[0].text", code="invalid_value",
         content=b'{"role": "user", "content": [{"type": "text", "text": "\\ude00\\ud83d"}]}'),
    Case("surrogate-in-additional-message", "POST", "/threads/{thread}/runs", 400,
         "string contains an unpaired surrogate", param="additional_messages[0].content",
         code="invalid_value",
         content=b'{"assistant_id": "{asst}", "additional_messages": '
                 b'[{"role": "user", "content": "\\ud800"}]}'),
    Case("surrogate-in-thread-of-run", "POST", "/threads/runs", 400,
         "string contains an unpaired surrogate", param="thread.messages[0].metadata.k",
         code="invalid_value",
         content=b'{"assistant_id": "{asst}", "thread": {"messages": [{"role": "user", '
                 b'"content": "hi", "metadata": {"k": "\\ud800"}}]}}'),
    Case("surrogate-in-run-metadata", "POST", "/threads/{thread}/runs/{run}", 400,
         "string contains an unpaired surrogate", param="metadata.k", code="invalid_value",
         content=b'{"metadata": {"k": "\\udbff"}}'),
    Case("surrogate-in-tool-output", "POST", "/threads/{thread}/runs/{run}/submit_tool_outputs",
         400, "string contains an unpaired surrogate", param="tool_outputs[0].output",
         code="invalid_value",
         content=b'{"tool_outputs": [{"tool_call_id": "call_x", "output": "\\ud800"}]}'),
    Case("surrogate-in-message-metadata", "POST", "/threads/{thread}/messages/{msg}", 400,
         "string contains an unpaired surrogate", param="metadata.k", code="invalid_value",
         content=b'{"metadata": {"k": "\\ud800"}}'),
    # --- nesting: bounded before anything recursive touches the body ---
    Case("nested-1000-deep", "POST", "/assistants", 400,
         "The request body is nested too deeply",
         content=b'{"model": "gpt-4o", "metadata": ' + b"[" * 1000 + b"]" * 1000 + b"}"),
    Case("nested-100000-deep", "POST", "/threads", 400, "The request body is nested too deeply",
         content=b'{"metadata": ' + b'{"a": ' * 100_000 + b"1" + b"}" * 100_001),
    Case("nested-65-deep-in-parameters", "POST", "/assistants", 400,
         "The request body is nested too deeply",
         content=b'{"model": "gpt-4o", "tools": [{"type": "function", "function": '
                 b'{"name": "f", "parameters": ' + b'{"a": ' * 60 + b"{}" + b"}" * 60
                 + b"}}]}"),
    Case("array-body-100000-deep", "POST", "/threads", 400,
         "The request body is nested too deeply", content=b"[" * 100_000 + b"]" * 100_000),
    # --- Last-Event-ID: a sequence number the store can hold, or a 400 before streaming ---
    Case("last-event-id-2-63", "GET", "/threads/{thread}/runs/{run}/events", 400,
         "Invalid 'Last-Event-ID'", param="Last-Event-ID", code="invalid_value",
         send_headers={"Last-Event-ID": "9223372036854775808"}),
    Case("last-event-id-huge", "GET", "/threads/{thread}/runs/{run}/events", 400,
         "Invalid 'Last-Event-ID'", param="Last-Event-ID", code="invalid_value",
         send_headers={"Last-Event-ID": "9" * 4000}),
    Case("after-2-64", "GET", "/threads/{thread}/runs/{run}/events", 400,
         "Invalid 'after'", param="after", code="invalid_value",
         params={"after": str(2**64)}),
    Case("last-event-id-underscores", "GET", "/threads/{thread}/runs/{run}/events", 400,
         "Invalid 'Last-Event-ID'", param="Last-Event-ID", code="invalid_value",
         send_headers={"Last-Event-ID": "1_0"}),
    # --- sizes: message text is capped as on OpenAI (256,000 characters) ---
    Case("message-content-256001", "POST", "/threads/{thread}/messages", 400,
         "Invalid 'content': string too long. Expected a string with maximum length 256000, "
         "but got a string with length 256001 instead.", param="content",
         code="string_above_max_length", json={"role": "user", "content": "x" * 256_001}),
    Case("message-parts-over-256000", "POST", "/threads/{thread}/messages", 400,
         "Expected at most 256000 characters of text, but got 256001", param="content",
         code="string_above_max_length",
         json={"role": "user", "content": [{"type": "text", "text": "x" * 200_000},
                                           {"type": "text", "text": "y" * 56_001}]}),
    Case("thread-message-256001", "POST", "/threads", 400,
         "Expected a string with maximum length 256000", param="messages[0].content",
         code="string_above_max_length",
         json={"messages": [{"role": "user", "content": "x" * 256_001}]}),
    Case("additional-message-256001", "POST", "/threads/{thread}/runs", 400,
         "Expected a string with maximum length 256000", param="additional_messages[0].content",
         code="string_above_max_length",
         json={"assistant_id": "{asst}",
               "additional_messages": [{"role": "assistant", "content": "x" * 256_001}]}),
    # --- image URLs are URLs ---
    Case("image-url-not-a-url", "POST", "/threads/{thread}/messages", 400,
         "Invalid 'content[0].image_url.url': expected an http or https URL",
         param="content[0].image_url.url", code="invalid_value",
         json={"role": "user", "content": [{"type": "image_url",
                                            "image_url": {"url": "not a url"}}]}),
    Case("image-url-javascript", "POST", "/threads", 400, "expected an http or https URL",
         param="messages[0].content[1].image_url.url", code="invalid_value",
         json={"messages": [{"role": "user", "content": [
             {"type": "text", "text": "look"},
             {"type": "image_url", "image_url": {"url": "javascript:alert(1)"}}]}]}),
    Case("image-url-data-not-an-image", "POST", "/threads/{thread}/messages", 400,
         "expected an http or https URL", param="content[0].image_url.url", code="invalid_value",
         json={"role": "user", "content": [{"type": "image_url", "image_url": {
             "url": "data:text/html;base64,PGI+aGk8L2I+"}}]}),
    Case("image-url-without-host", "POST", "/threads/{thread}/messages", 400,
         "expected an http or https URL", param="content[0].image_url.url", code="invalid_value",
         json={"role": "user", "content": [{"type": "image_url",
                                            "image_url": {"url": "https:///cat.png"}}]}),
    # --- file_search vector store helpers: the spec's shape ---
    Case("vector-store-file-ids-not-a-list", "POST", "/assistants", 400,
         "Invalid type for 'tool_resources.file_search.vector_stores[0].file_ids': expected an "
         "array", param="tool_resources.file_search.vector_stores[0].file_ids",
         code="invalid_type",
         json={"model": "gpt-4o", "tool_resources": {"file_search": {
             "vector_stores": [{"file_ids": "file_1"}]}}}),
    Case("vector-store-file-id-number", "POST", "/threads", 400,
         "expected a string, but got an integer",
         param="tool_resources.file_search.vector_stores[0].file_ids[1]", code="invalid_type",
         json={"tool_resources": {"file_search": {"vector_stores": [{"file_ids": ["f", 2]}]}}}),
    Case("vector-store-10001-files", "POST", "/threads", 400,
         "Expected an array with maximum length 10000",
         param="tool_resources.file_search.vector_stores[0].file_ids",
         code="array_above_max_length",
         json={"tool_resources": {"file_search": {"vector_stores": [
             {"file_ids": [f"file_{i}" for i in range(10_001)]}]}}}),
    Case("vector-store-chunk-size-50", "POST", "/assistants", 400,
         "Expected a value >= 100, but got 50 instead.",
         param="tool_resources.file_search.vector_stores[0].chunking_strategy.static"
               ".max_chunk_size_tokens", code="integer_below_min_value",
         json={"model": "gpt-4o", "tool_resources": {"file_search": {"vector_stores": [
             {"chunking_strategy": {"type": "static", "static": {
                 "max_chunk_size_tokens": 50, "chunk_overlap_tokens": 0}}}]}}}),
    Case("vector-store-overlap-over-half", "POST", "/assistants/{asst}", 400,
         "must not exceed half of 'max_chunk_size_tokens'",
         param="tool_resources.file_search.vector_stores[0].chunking_strategy.static"
               ".chunk_overlap_tokens", code="invalid_value",
         json={"tool_resources": {"file_search": {"vector_stores": [
             {"chunking_strategy": {"type": "static", "static": {
                 "max_chunk_size_tokens": 800, "chunk_overlap_tokens": 401}}}]}}}),
    Case("vector-store-chunking-dynamic", "POST", "/threads", 400,
         "Invalid value: 'dynamic'. Supported values are: 'auto' and 'static'.",
         param="tool_resources.file_search.vector_stores[0].chunking_strategy.type",
         code="invalid_value",
         json={"tool_resources": {"file_search": {"vector_stores": [
             {"chunking_strategy": {"type": "dynamic"}}]}}}),
    Case("vector-store-unknown-key", "POST", "/threads", 400,
         "Unknown parameter: 'tool_resources.file_search.vector_stores[0].name'.",
         param="tool_resources.file_search.vector_stores[0].name", code="unknown_parameter",
         json={"tool_resources": {"file_search": {"vector_stores": [{"name": "docs"}]}}}),
    Case("vector-store-metadata-17-keys", "POST", "/threads/runs", 400,
         "Expected an object with at most 16 properties",
         param="thread.tool_resources.file_search.vector_stores[0].metadata",
         code="invalid_value",
         json={"assistant_id": "{asst}", "thread": {"tool_resources": {"file_search": {
             "vector_stores": [{"metadata": SEVENTEEN_KEYS}]}}}}),
    Case("vector-store-ids-and-helper", "POST", "/assistants", 400,
         "give either 'vector_store_ids' or 'vector_stores', not both",
         param="tool_resources.file_search", code="invalid_value",
         json={"model": "gpt-4o", "tool_resources": {"file_search": {
             "vector_store_ids": ["vs_1"], "vector_stores": [{"file_ids": []}]}}}),
    # --- reasoning_effort: the spec's values, and only those ---
    Case("reasoning-effort-extreme", "POST", "/threads/{thread}/runs", 400,
         "Invalid value: 'extreme'. Supported values are: 'none', 'minimal', 'low', 'medium', "
         "'high', 'xhigh', and 'max'.", param="reasoning_effort", code="invalid_value",
         json={"assistant_id": "{asst}", "reasoning_effort": "extreme"}),
    # --- bodies that are not a JSON object ---
    Case("malformed-json", "POST", "/assistants", 400,
         "We could not parse the JSON body of your request.", content=b'{"model": "gpt-4o",'),
    Case("nan-is-not-json", "POST", "/assistants", 400,
         "We could not parse the JSON body of your request.",
         content=b'{"model": "gpt-4o", "tools": [{"type": "function", "function": '
                 b'{"name": "f", "parameters": {"default": NaN}}}]}'),
    Case("number-out-of-range", "POST", "/assistants", 400,
         "We could not parse the JSON body of your request.",
         content=b'{"model": "gpt-4o", "tools": [{"type": "function", "function": '
                 b'{"name": "f", "parameters": {"maximum": 1e400}}}]}'),
    Case("json-array-body", "POST", "/threads/{thread}/messages", 400,
         "The request body must be a JSON object.", json=[{"role": "user", "content": "x"}]),
    # --- authentication, headers, routing ---
    Case("missing-authorization", "POST", "/assistants", 401, "You didn't provide an API key.",
         json={"model": "gpt-4o"}, headers="no_auth"),
    Case("wrong-api-key", "DELETE", "/threads/{thread}", 401, "Incorrect API key provided",
         code="invalid_api_key", headers="wrong_key"),
    Case("missing-beta-header", "POST", "/threads", 400,
         "You must provide the 'OpenAI-Beta' header to access the Assistants API.",
         code="invalid_beta", json={}, headers="no_beta"),
    Case("unknown-url", "POST", "/threads/{thread}/archive", 404,
         "Invalid URL (POST /v1/threads/{thread}/archive)", json={}),
    Case("wrong-method", "DELETE", "/threads/{thread}/runs/{run}", 405,
         "Method DELETE is not allowed", allow="GET, HEAD, POST"),
    Case("wrong-method-put", "PUT", "/assistants/{asst}", 405, "Method PUT is not allowed",
         json={"name": "x"}, allow="DELETE, GET, HEAD, POST"),
    Case("wrong-method-on-list", "DELETE", "/threads/{thread}/messages", 405,
         "Method DELETE is not allowed", allow="GET, HEAD, POST"),
    # --- state conflicts ---
    Case("cancel-completed-run", "POST", "/threads/{thread}/runs/{run}/cancel", 400,
         "Cannot cancel run with status 'completed'."),
    Case("run-on-locked-thread", "POST", "/threads/{locked}/runs", 400,
         "Thread {locked} already has an active run {active}.",
         json={"assistant_id": "{asst}"}, locked=True),
    Case("message-on-locked-thread", "POST", "/threads/{locked}/messages", 400,
         "Can't add messages to {locked} while a run {active} is active.",
         json={"role": "user", "content": "let me in"}, locked=True),
    Case("delete-locked-thread", "DELETE", "/threads/{locked}", 400,
         "Can't delete thread {locked} while a run {active} is active.", locked=True),
    # --- tool outputs ---
    Case("tool-outputs-to-completed-run", "POST",
         "/threads/{thread}/runs/{run}/submit_tool_outputs", 400,
         'Runs in status "completed" do not accept tool outputs.',
         json={"tool_outputs": [{"tool_call_id": "call_x", "output": "1"}]}),
    Case("tool-outputs-to-unknown-run", "POST",
         "/threads/{thread}/runs/run_nope/submit_tool_outputs", 404,
         "No run found with id 'run_nope'.",
         json={"tool_outputs": [{"tool_call_id": "call_x", "output": "1"}]}),
    Case("tool-outputs-missing", "POST", "/threads/{thread}/runs/{run}/submit_tool_outputs", 400,
         "Missing required parameter: 'tool_outputs'.", param="tool_outputs", json={}),
    Case("tool-output-not-a-string", "POST",
         "/threads/{thread}/runs/{run}/submit_tool_outputs", 400,
         "Invalid type for 'tool_outputs[0].output': expected a string, but got an integer",
         param="tool_outputs[0].output", code="invalid_type",
         json={"tool_outputs": [{"tool_call_id": "call_x", "output": 1}]}),
    Case("tool-outputs-to-active-run", "POST",
         "/threads/{locked}/runs/{active}/submit_tool_outputs", 400,
         'Runs in status "in_progress" do not accept tool outputs.',
         json={"tool_outputs": [{"tool_call_id": "call_x", "output": "1"}]}, locked=True),
    Case("webhook-bad-url", "POST", "/webhooks", 400,
         "Invalid 'url': expected an absolute http or https URL.", param="url",
         code="invalid_value", json={"url": "ftp://example.com/hook"}),
]  # fmt: skip


def test_the_table_is_big_and_names_are_unique() -> None:
    assert len(CASES) >= 35
    assert len({c.name for c in CASES}) == len(CASES)


def _client(stack: Stack, headers: Headers) -> httpx.Client:
    if headers == "ok":
        return stack.http()
    sent = {
        "no_auth": {"OpenAI-Beta": "assistants=v2"},
        "wrong_key": {
            "Authorization": "Bearer sk-wrong-0123456789",
            "OpenAI-Beta": "assistants=v2",
        },
        "no_beta": {"Authorization": f"Bearer {stack.api_key}"},
    }[headers]
    return httpx.Client(base_url=stack.base_url, headers=sent, timeout=30)


def _lock_thread(http: httpx.Client, world: World, model: ScriptedModel) -> tuple[str, str]:
    """A new thread whose run is stuck waiting for the model's first token."""
    thread = http.post("/threads", json={"messages": [{"role": "user", "content": "hold"}]})
    thread_id = thread.json()["id"]
    model.enqueue(Reply(text="slow...", ttft=30))
    run = http.post(f"/threads/{thread_id}/runs", json={"assistant_id": world.ids["asst"]})
    assert run.status_code == 200, run.text
    # Once the model holds the request, nothing writes to the store until its first token.
    model.wait_for_requests(1, timeout=30)
    return thread_id, run.json()["id"]


def _cancel_and_wait(http: httpx.Client, thread_id: str, run_id: str) -> None:
    response = http.post(f"/threads/{thread_id}/runs/{run_id}/cancel")
    assert response.status_code == 200, response.text
    deadline = time.monotonic() + 30
    while http.get(f"/threads/{thread_id}/runs/{run_id}").json()["status"] != "cancelled":
        assert time.monotonic() < deadline, "the locking run was not cancelled"
        time.sleep(0.05)


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_request(case: Case, world: World, stack: Stack, model: ScriptedModel) -> None:
    with stack.http() as http:
        ids = dict(world.ids)
        lock: tuple[str, str] | None = None
        if case.locked:
            lock = _lock_thread(http, world, model)
            ids.update(locked=lock[0], active=lock[1])
        try:
            watched = ids["locked"] if case.locked else ids["thread"]
            before = world.snapshot(http, watched)
            with _client(stack, case.headers) as bad:
                kwargs: dict[str, Any] = {"params": case.params}
                headers = dict(case.send_headers or {})
                if case.json is not NO_BODY:
                    kwargs["json"] = _fill(case.json, ids)
                elif case.content is not None:
                    kwargs["content"] = _fill_bytes(case.content, ids)
                    headers["Content-Type"] = "application/json"
                response = bad.request(
                    case.method, _fill(case.path, ids), headers=headers, **kwargs
                )
            after = world.snapshot(http, watched)
        finally:
            if lock is not None:
                _cancel_and_wait(http, *lock)

    assert response.status_code == case.status, response.text
    body = response.json()
    validate("ErrorResponse", body)
    assert set(body) == {"error"}
    error = body["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["type"] == case.type
    assert _fill(case.message, ids) in error["message"]
    assert error["param"] == case.param
    assert error["code"] == case.code
    if case.allow is not None:
        assert response.headers.get("allow") == case.allow
    assert after == before, "a rejected request changed something"


def test_sdk_view_of_a_bad_request(world: World, stack: Stack) -> None:
    client = stack.client()
    with pytest.raises(openai.BadRequestError) as raised:
        client.beta.assistants.create(model="gpt-4o", temperature=3)
    error = raised.value
    assert error.status_code == 400
    assert error.code == "decimal_above_max_value" and error.param == "temperature"
    assert error.type == "invalid_request_error"
    expected = (
        "Invalid 'temperature': decimal above maximum value. Expected a value <= 2, but got 3 "
        "instead."
    )
    assert str(error) == f"Error code: 400 - {expected}"
    assert error.message == f"Error code: 400 - {expected}"
    assert isinstance(error.body, dict) and error.body["message"] == expected

    with pytest.raises(openai.BadRequestError) as unknown:
        client.beta.threads.messages.create(
            world.ids["thread"],
            role="user",
            content="x",
            extra_body={"foo": 1},
        )
    assert unknown.value.param == "foo" and unknown.value.code == "unknown_parameter"
    assert str(unknown.value) == "Error code: 400 - Unknown parameter: 'foo'."

    with pytest.raises(openai.NotFoundError) as missing:
        client.beta.threads.retrieve("thread_nope")
    assert missing.value.status_code == 404
    assert str(missing.value) == "Error code: 404 - No thread found with id 'thread_nope'."
    assert missing.value.param is None and missing.value.code is None

    with pytest.raises(openai.AuthenticationError) as unauthorized:
        stack.client(api_key="sk-wrong-0123456789").beta.assistants.list()
    assert unauthorized.value.code == "invalid_api_key"
