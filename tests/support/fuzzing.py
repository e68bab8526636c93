"""Fuzzing the HTTP API from the official OpenAPI document (schemathesis + hypothesis).

Why it exists: the malformed-request table (`test_bad_input.py`) checks the inputs someone thought
of; this generates the ones nobody did, for every operation in the document, and holds each answer
to three rules: no 5xx, every error has OpenAI's shape, every 2xx body (and every event of a
streamed one) validates against the document's response schema.

Generation is separated from sending: `draw_cases` draws a fixed, derandomized list of cases per
operation (hypothesis without shrinking, so a failure never costs a shrink), and `check` judges one
answer and returns what is wrong with it instead of raising, so one run reports every distinct
failure, not just the first.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from typing import Any

import httpx
import jsonschema
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis import Case, GenerationMode
from schemathesis.core import NotSet
from schemathesis.schemas import APIOperation, BaseSchema

from tests.support.contract import SPEC, _rewrite, validate

Operation = APIOperation[Any, Any, Any, Any]
FuzzCase = Case[Operation]

# The parts of the API under fuzz: operations whose path starts with one of these.
FUZZED_PREFIXES = ("/assistants", "/threads", "/files", "/vector_stores")

# A 4xx must use one of these statuses, and its error `type` is OpenAI's for that status.
ERROR_TYPES = {
    400: "invalid_request_error",
    404: "invalid_request_error",
    405: "invalid_request_error",
    413: "invalid_request_error",
}


def _closed(node: Any) -> Any:
    """Every object schema that lists its properties and says nothing about others gets
    `additionalProperties: false`: the service rejects unknown fields at any depth, so without
    this most "valid" generated bodies would carry junk keys and never reach a 2xx."""
    if isinstance(node, list):
        return [_closed(item) for item in node]
    if not isinstance(node, dict):
        return node
    out = {key: _closed(value) for key, value in node.items()}
    if "properties" in out and "additionalProperties" not in out:
        out["additionalProperties"] = False
    return out


@cache
def fuzz_schema() -> BaseSchema:
    # `nullable` becomes `anyOf [..., null]` as in the response validator, so null is "valid".
    raw = _closed(_rewrite(json.loads(SPEC.read_text())))
    return schemathesis.openapi.from_dict(raw)


def in_scope(path: str) -> bool:
    return path.startswith(FUZZED_PREFIXES)


def fuzzed_operations() -> list[str]:
    """The labels (`POST /threads/{thread_id}/runs`) of the operations in scope, in document
    order."""
    labels = []
    for result in fuzz_schema().get_all_operations():
        operation: Operation = result.ok()  # type: ignore[union-attr]  # the document is valid
        if in_scope(operation.path):
            labels.append(operation.label)
    return labels


def operation(label: str) -> Operation:
    found = fuzz_schema().find_operation_by_label(label)
    assert found is not None, label
    return found


def operation_id(label: str) -> str:
    return str(operation(label).definition.raw["operationId"])


def has_inputs(op: Operation) -> bool:
    """Whether the operation takes a body or query parameters (path ids are seeded by the test,
    so an operation with neither has nothing left to fuzz)."""
    raw = op.definition.raw
    return "requestBody" in raw or any(p.get("in") == "query" for p in raw.get("parameters", []))


def draw_cases(op: Operation, mode: GenerationMode, count: int) -> list[FuzzCase]:
    """`count` cases (fewer if the space is smaller), the same ones on every run."""
    drawn: list[FuzzCase] = []
    if count <= 0:
        return drawn

    @settings(
        max_examples=count,
        derandomize=True,  # a fixed seed: CI sees the same requests every time
        database=None,
        phases=[Phase.explicit, Phase.generate],  # no shrinking, no replay of old failures
        deadline=None,
        suppress_health_check=list(HealthCheck),
        print_blob=False,
    )
    @given(op.as_strategy(generation_mode=mode))
    def collect(case: FuzzCase) -> None:
        drawn.append(case)

    collect()
    return drawn


def response_schema(op: Operation) -> str | None:
    """The component schema name of the operation's 200 answer; None for a file download,
    whose answer is the file itself (the document says `{"type": "string"}`)."""
    content = op.definition.raw["responses"]["200"]["content"]["application/json"]
    ref: str | None = content["schema"].get("$ref")
    return None if ref is None else ref.rsplit("/", 1)[-1]


# --- hostile strings ---------------------------------------------------------------------------

LONE_SURROGATE = "\ud800"  # valid JSON (`"\\ud800"`), but no UTF-8 text can hold it
KEY = object()  # marks a path to an object key rather than to a value


def _string_slots(value: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Paths to every string value and object key, in document order (a key's path ends in
    `KEY`). Top-level keys are left out: they name parameters, and a spoiled name is merely
    unknown."""
    if isinstance(value, str):
        return [path]
    slots: list[tuple[Any, ...]] = []
    if isinstance(value, dict):
        for key, item in value.items():
            if path:
                slots.append((*path, key, KEY))
            slots += _string_slots(item, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            slots += _string_slots(item, (*path, index))
    return slots


def with_lone_surrogate(body: Any, pick: int) -> Any:
    """A copy of `body` whose `pick`-th string (modulo their number; keys included) ends in a
    lone surrogate; `body` itself when it holds no string."""
    slots = _string_slots(body)
    if not slots:
        return body
    path = slots[pick % len(slots)]
    if not path:
        return body + LONE_SURROGATE
    copy = json.loads(json.dumps(body))
    is_key = path[-1] is KEY
    *parents, name = path[:-1] if is_key else path
    container = copy
    for step in parents:
        container = container[step]
    if is_key:
        container[name + LONE_SURROGATE] = container.pop(name)
    else:
        container[name] += LONE_SURROGATE
    return copy


# --- sending -------------------------------------------------------------------------------------


def _query(params: dict[str, Any]) -> list[tuple[str, str | int | float | bool | None]]:
    """Query parameters as `requests` would send them (lists repeat the key)."""
    items: list[tuple[str, str | int | float | bool | None]] = []
    for key, value in params.items():
        for item in value if isinstance(value, list) else [value]:
            items.append((str(key), item if isinstance(item, str) else json.dumps(item)))
    return items


@dataclass
class Request:
    method: str
    url: str
    query: list[tuple[str, str | int | float | bool | None]]
    content: bytes | None  # a JSON body (or what stands in its place)
    files: list[Any] | None = None  # a multipart body: `requests`-style parts, as httpx takes them

    def describe(self) -> str:
        body = "" if self.content is None else " " + self.content[:300].decode("utf-8", "replace")
        if self.files is not None:
            body = f" multipart {[part[0] for part in self.files]}"
        query = f" ?{self.query}" if self.query else ""
        return f"{self.method} {self.url}{query}{body}"


def build_request(case: FuzzCase, base_url: str) -> Request:
    kwargs = case.as_transport_kwargs(base_url=base_url)
    query = _query(kwargs.get("params") or {})
    method, url = case.method.upper(), kwargs["url"]
    if kwargs.get("files") is not None:
        return Request(method, url, query, None, files=list(kwargs["files"]))
    content: bytes | None = None
    if "json" in kwargs:
        # `allow_nan` stays on: a generated NaN/Infinity must be refused by the server, not here.
        content = json.dumps(kwargs["json"]).encode()
    elif kwargs.get("data") is not None:
        data = kwargs["data"]
        content = data if isinstance(data, bytes) else str(data).encode()
    return Request(method, url, query, content)


def send(http: httpx.Client, request: Request) -> httpx.Response:
    if request.files is not None:  # httpx sets the multipart content type and boundary
        return http.request(request.method, request.url, params=request.query, files=request.files)
    headers = {"Content-Type": "application/json"} if request.content is not None else {}
    return http.request(
        request.method, request.url, params=request.query, content=request.content, headers=headers
    )


# --- judging -------------------------------------------------------------------------------------


def _first_line(error: jsonschema.ValidationError) -> str:
    where = "/".join(str(part) for part in error.absolute_path) or "(root)"
    return f"at {where}: {error.message[:200]}"


def sse_frames(text: str) -> list[dict[str, str]]:
    frames: list[dict[str, str]] = []
    current: dict[str, str] = {}
    for line in [*text.splitlines(), ""]:
        if line.startswith(":"):
            continue
        if not line:
            if current:
                frames.append(current)
                current = {}
            continue
        name, _, value = line.partition(":")
        current[name] = value.removeprefix(" ")
    return frames


def _empty_page_ids(body: Any) -> Any:
    """The one deliberate difference from the document: an empty page's `first_id` and
    `last_id` are null, as the hosted API sent them (the document types them `string`; see
    shared/reference/openai_contract.md, "Lists")."""
    if isinstance(body, dict) and body.get("object") == "list" and body.get("data") == []:
        return {**body, **{key: body[key] or "" for key in ("first_id", "last_id") if key in body}}
    return body


def _check_error(status: int, response: httpx.Response) -> list[str]:
    if status not in ERROR_TYPES:
        return [f"unexpected status {status}"]
    try:
        body = response.json()
    except ValueError:
        return [f"{status} error body is not JSON"]
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(body, dict) or set(body) != {"error"} or not isinstance(error, dict):
        return [f"{status} error body is not {{'error': {{...}}}}"]
    problems = []
    if set(error) != {"message", "type", "param", "code"}:
        problems.append(f"{status} error keys are {sorted(error)}")
    if not isinstance(error.get("message"), str) or not error.get("message"):
        problems.append(f"{status} error message is not a non-empty string")
    if error.get("type") != ERROR_TYPES[status]:
        problems.append(f"{status} error type is {error.get('type')!r}")
    for key in ("param", "code"):
        if error.get(key) is not None and not isinstance(error.get(key), str):
            problems.append(f"{status} error {key} is neither a string nor null")
    return problems


def _check_stream(response: httpx.Response, on_object: Callable[[Any], None]) -> list[str]:
    frames = sse_frames(response.text)
    if not frames or frames[-1] != {"event": "done", "data": "[DONE]"}:
        return ["stream does not end with `event: done`"]
    problems = []
    for frame in frames:
        data: Any = frame.get("data")
        if frame.get("event") == "error":  # the spec's way to say 500 once the stream is open
            problems.append(f"the stream sent an error event: {str(data)[:200]}")
        if frame.get("event") != "done":
            try:
                data = json.loads(data or "")
            except ValueError:
                problems.append(f"event {frame.get('event')} data is not JSON")
                continue
            on_object(data)
        try:
            validate("AssistantStreamEvent", {"event": frame.get("event"), "data": data})
        except jsonschema.ValidationError as error:
            problems.append(f"event {frame.get('event')} fails the spec {_first_line(error)}")
    return problems


def check(
    op: Operation,
    response: httpx.Response,
    on_object: Callable[[Any], None],
    *,
    stream_requested: bool = False,
) -> list[str]:
    """What is wrong with this answer (empty: nothing). `on_object` sees every object a 2xx
    returned (streamed events' data included), so the caller can follow up on them."""
    status = response.status_code
    if status >= 500:
        return [f"{status} server error: {response.text[:200]}"]
    if status >= 300:
        return _check_error(status, response)
    content_type = response.headers.get("content-type", "")
    if content_type.startswith("text/event-stream"):
        if not stream_requested:
            return ["a stream nobody asked for (`stream` was not true)"]
        return _check_stream(response, on_object)
    schema = response_schema(op)
    if schema is None:
        return []
    try:
        body = response.json()
    except ValueError:
        return [f"{status} body is not JSON ({content_type})"]
    on_object(body)
    try:
        validate(schema, _empty_page_ids(body))
    except jsonschema.ValidationError as error:
        return [f"{status} body fails {schema} {_first_line(error)}"]
    return []


def body_of(case: FuzzCase) -> Any:
    return None if isinstance(case.body, NotSet) else case.body


def stream_requested(case: FuzzCase) -> bool:
    body = body_of(case)
    return isinstance(body, dict) and body.get("stream") is True
