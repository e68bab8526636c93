"""The Files API end to end, through the real `openai` SDK, on SQLite and PostgreSQL: upload,
retrieve, list (purpose filter, exact pagination), download (byte-identical, headers), delete (the
blob goes, and so do references in `tool_resources`); file ids in assistants, threads and messages
checked against the Files API; `attachments` and image parts stored as the spec shapes them, and
images handed to the model as Chat Completions image parts. A table of bad requests checks that
each is an OpenAI-shaped 4xx that writes nothing (no row, no blob). The same API runs once more
on the S3 backend, against a real S3 server process.
"""

from __future__ import annotations

import base64
import hashlib
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import openai
import pytest

from assistants.devserver import TemporalDevServer
from assistants.testing.scripted_model import Reply, ScriptedModel
from tests.conftest import started_stack
from tests.integration.test_bad_input import RowCounts
from tests.support import samples
from tests.support.contract import validate
from tests.support.s3 import ACCESS_KEY_ID, REGION, SECRET_ACCESS_KEY, S3Server
from tests.support.stack import Stack

MiB = 1024 * 1024


def _key(stack: Stack, project: str) -> str:
    return stack.cli("keys", "create", "--project", project).splitlines()[0].strip()


def blob_paths(stack: Stack) -> list[str]:
    """Every file under the local blob storage root (temporary files included)."""
    root = stack.workdir / "data" / "files"
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def upload(client: openai.OpenAI, name: str, data: bytes, purpose: str) -> dict[str, Any]:
    """`files.create`, returning the raw JSON after checking it against the spec."""
    raw = client.files.with_raw_response.create(file=(name, data), purpose=purpose)  # type: ignore[arg-type]
    body: dict[str, Any] = raw.http_response.json()
    validate("OpenAIFile", body)
    parsed = raw.parse()
    assert parsed.id == body["id"] and parsed.bytes == len(data)
    return body


@dataclass
class World:
    """A project of its own (so lists are exactly ours), a second project, and the objects the
    tests aim at."""

    stack: Stack
    client: openai.OpenAI
    key: str
    other: openai.OpenAI
    other_key: str
    rows: RowCounts
    ids: dict[str, str] = field(default_factory=dict)


@pytest.fixture(scope="module")
def world(stack: Stack, model: ScriptedModel) -> Iterator[World]:
    model.reset()
    suffix = uuid.uuid4().hex[:8]
    key, other_key = _key(stack, f"files-{suffix}"), _key(stack, f"files-other-{suffix}")
    client, other = stack.client(api_key=key), stack.client(api_key=other_key)
    text = upload(client, "notes.txt", b"plain notes\n", "assistants")
    image = upload(client, "pixel.png", samples.png(), "vision")
    theirs = upload(other, "theirs.txt", b"the other project's file\n", "assistants")
    assistant = client.beta.assistants.create(model="gpt-4o", tools=[{"type": "code_interpreter"}])
    thread = client.beta.threads.create()
    rows = RowCounts(stack.database_url)
    found = World(
        stack=stack,
        client=client,
        key=key,
        other=other,
        other_key=other_key,
        rows=rows,
        ids={
            "text": text["id"],
            "image": image["id"],
            "theirs": theirs["id"],
            "asst": assistant.id,
            "thread": thread.id,
            "missing": "file-" + "x" * 24,
        },
    )
    try:
        yield found
    finally:
        rows.close()


# --- the happy paths -----------------------------------------------------------------------------


def test_upload_retrieve_download_bytes(world: World) -> None:
    client = world.client
    data = os.urandom(3 * MiB + 123)
    binary = upload(client, "random.bin", data, "assistants")
    assert binary["object"] == "file" and binary["id"].startswith("file-")
    assert binary["bytes"] == len(data) and binary["filename"] == "random.bin"
    assert binary["purpose"] == "assistants" and binary["status"] == "processed"
    assert "expires_at" not in binary
    document = samples.pdf("quarterly numbers")
    pdf = upload(client, "Report Ü 2026.pdf", document, "user_data")

    assert client.files.retrieve(binary["id"]).model_dump(exclude_none=True) == binary
    with world.stack.http(world.key) as http:
        got = http.get(f"/files/{pdf['id']}")
        assert got.json() == pdf
        validate("OpenAIFile", got.json())

    content = client.files.content(binary["id"])
    assert content.content == data
    assert hashlib.sha256(content.content).digest() == hashlib.sha256(data).digest()
    assert content.response.headers["content-type"] == "application/octet-stream"
    assert content.response.headers["content-length"] == str(len(data))

    content = client.files.content(pdf["id"])
    assert content.content == document
    assert content.response.headers["content-type"] == "application/pdf"
    disposition = content.response.headers["content-disposition"]
    assert disposition == (
        "attachment; filename=\"Report _ 2026.pdf\"; filename*=UTF-8''Report%20%C3%9C%202026.pdf"
    )
    stored = [p for p in blob_paths(world.stack) if p.endswith(pdf["id"])]
    assert len(stored) == 1 and not stored[0].startswith(".")  # files/<project>/<id>, no temp


def test_upload_with_expiry(world: World) -> None:
    created = world.client.files.create(
        file=("short-lived.txt", b"soon gone"),
        purpose="batch",
        expires_after={"anchor": "created_at", "seconds": 3600},
    )
    assert created.expires_at == created.created_at + 3600
    assert world.client.files.retrieve(created.id).expires_at == created.expires_at


def test_list_filters_and_paginates_exactly(world: World) -> None:
    client = world.client
    made = [
        upload(client, f"page-{i}.png", samples.png(i + 1, 1), "fine-tune")["id"] for i in range(5)
    ]
    newest_first = list(reversed(made))

    with world.stack.http(world.key) as http:
        body = http.get("/files", params={"purpose": "fine-tune"}).json()
    validate("ListFilesResponse", body)
    assert [f["id"] for f in body["data"]] == newest_first
    assert body["first_id"] == newest_first[0] and body["last_id"] == newest_first[-1]
    assert body["has_more"] is False

    first = client.files.list(purpose="fine-tune", limit=2)
    assert [f.id for f in first.data] == newest_first[:2] and first.has_more
    second = client.files.list(purpose="fine-tune", limit=2, after=first.data[-1].id)
    assert [f.id for f in second.data] == newest_first[2:4] and second.has_more
    third = client.files.list(purpose="fine-tune", limit=2, after=second.data[-1].id)
    assert [f.id for f in third.data] == newest_first[4:] and not third.has_more
    # The SDK's auto-pagination follows `after` the same way.
    assert [f.id for f in client.files.list(purpose="fine-tune", limit=2)] == newest_first
    ascending = client.files.list(purpose="fine-tune", limit=3, order="asc")
    assert [f.id for f in ascending.data] == made[:3]
    assert [
        f.id for f in client.files.list(purpose="fine-tune", order="asc", after=made[2])
    ] == made[3:]

    everything = [f.id for f in client.files.list()]
    assert set(made) | {world.ids["text"], world.ids["image"]} <= set(everything)
    assert world.ids["theirs"] not in everything  # another project's file is not listed
    assert [f.id for f in client.files.list(purpose="vision")] == [world.ids["image"]]
    assert client.files.list(purpose="evals").data == []


def test_delete_removes_blob_and_references(world: World) -> None:
    client = world.client
    doomed = upload(client, "doomed.csv", b"a,b\n1,2\n", "assistants")["id"]
    kept = upload(client, "kept.csv", b"c,d\n3,4\n", "assistants")["id"]
    assistant = client.beta.assistants.create(
        model="gpt-4o",
        tools=[{"type": "code_interpreter"}],
        tool_resources={"code_interpreter": {"file_ids": [doomed, kept]}},
    )
    thread = client.beta.threads.create(tool_resources={"code_interpreter": {"file_ids": [doomed]}})
    assert [p for p in blob_paths(world.stack) if doomed in p]

    with world.stack.http(world.key) as http:
        raw = http.delete(f"/files/{doomed}")
    assert raw.status_code == 200
    assert raw.json() == {"id": doomed, "object": "file", "deleted": True}
    validate("DeleteFileResponse", raw.json())

    with pytest.raises(openai.NotFoundError) as raised:
        client.files.retrieve(doomed)
    assert raised.value.body == {
        "message": f"No such File object: {doomed}",
        "type": "invalid_request_error",
        "param": "id",
        "code": None,
    }
    with pytest.raises(openai.NotFoundError):
        client.files.content(doomed)
    with pytest.raises(openai.NotFoundError):
        client.files.delete(doomed)
    assert not [p for p in blob_paths(world.stack) if doomed in p]  # the bytes are gone
    assert doomed not in [f.id for f in client.files.list()]

    after = client.beta.assistants.retrieve(assistant.id)
    assert after.tool_resources is not None and after.tool_resources.code_interpreter is not None
    assert after.tool_resources.code_interpreter.file_ids == [kept]
    thread_after = client.beta.threads.retrieve(thread.id)
    assert thread_after.tool_resources is not None
    assert thread_after.tool_resources.code_interpreter is not None
    assert thread_after.tool_resources.code_interpreter.file_ids == []
    assert client.files.delete(kept).deleted is True


def test_code_interpreter_file_ids_are_checked(world: World) -> None:
    client = world.client
    text = world.ids["text"]
    assistant = client.beta.assistants.create(
        model="gpt-4o", tool_resources={"code_interpreter": {"file_ids": [text]}}
    )
    assert _code_files(assistant.tool_resources) == [text]
    both = [text, world.ids["image"]]
    modified = client.beta.assistants.update(
        assistant.id, tool_resources={"code_interpreter": {"file_ids": both}}
    )
    assert _code_files(modified.tool_resources) == both
    thread = client.beta.threads.create(tool_resources={"code_interpreter": {"file_ids": [text]}})
    assert _code_files(thread.tool_resources) == [text]
    assert _code_files(client.beta.threads.retrieve(thread.id).tool_resources) == [text]


def _code_files(resources: Any) -> list[str] | None:
    code = getattr(resources, "code_interpreter", None)
    return None if code is None else list(code.file_ids or [])


def test_attachments_and_image_parts_round_trip(world: World, model: ScriptedModel) -> None:
    client, ids = world.client, world.ids
    url = "https://example.com/cat.png"
    thread = client.beta.threads.create()
    raw = client.beta.threads.messages.with_raw_response.create(
        thread.id,
        role="user",
        content=[
            {"type": "text", "text": "What is in these pictures?"},
            {"type": "image_file", "image_file": {"file_id": ids["image"], "detail": "high"}},
            {"type": "image_url", "image_url": {"url": url}},
        ],
        attachments=[{"file_id": ids["text"], "tools": [{"type": "code_interpreter"}]}],
    )
    stored = raw.http_response.json()
    validate("MessageObject", stored)
    assert stored["content"][1:] == [
        {"type": "image_file", "image_file": {"file_id": ids["image"], "detail": "high"}},
        {"type": "image_url", "image_url": {"url": url}},
    ]
    assert stored["attachments"] == [
        {"file_id": ids["text"], "tools": [{"type": "code_interpreter"}]}
    ]
    message = client.beta.threads.messages.retrieve(stored["id"], thread_id=thread.id)
    assert message.content[1].type == "image_file"
    assert message.content[1].image_file.file_id == ids["image"]
    assert message.content[2].type == "image_url"
    assert message.content[2].image_url.url == url
    assert message.attachments is not None and message.attachments[0].file_id == ids["text"]

    model.reset()
    model.enqueue(Reply(text="A red square and a cat."))
    assistant = client.beta.assistants.create(model="gpt-4o")
    run = client.beta.threads.runs.create_and_poll(thread_id=thread.id, assistant_id=assistant.id)
    assert run.status == "completed", run.last_error
    user = [m for m in model.requests[-1]["messages"] if m["role"] == "user"][-1]
    assert user["content"][0] == {"type": "text", "text": "What is in these pictures?"}
    inline = user["content"][1]
    assert inline["type"] == "image_url" and inline["image_url"]["detail"] == "high"
    prefix = "data:image/png;base64,"
    assert inline["image_url"]["url"].startswith(prefix)
    assert base64.b64decode(inline["image_url"]["url"][len(prefix) :]) == samples.png()
    assert user["content"][2] == {"type": "image_url", "image_url": {"url": url}}


# --- bad requests --------------------------------------------------------------------------------

RAW = object()


@dataclass(frozen=True)
class Case:
    name: str
    method: str
    path: str
    status: int
    message: str  # substring of the error message; `{…}` filled from the world's ids
    param: str | None = None
    code: str | None = None
    json: Any = None
    files: dict[str, Any] | None = None
    data: dict[str, str] | None = None
    raw: tuple[bytes, str] | None = None  # a hand-built body and its Content-Type
    params: dict[str, str] | None = None
    other_project: bool = False  # sent with the second project's key


def _fill(value: Any, ids: dict[str, str]) -> Any:
    if isinstance(value, str):
        return value.format_map(ids) if "{" in value else value
    if isinstance(value, dict):
        return {k: _fill(v, ids) for k, v in value.items()}
    if isinstance(value, list):
        return [_fill(v, ids) for v in value]
    return value


TXT = ("a.txt", b"hello", "text/plain")
PURPOSE = {"purpose": "assistants"}
NO_SUCH = "No such File object: "
UNKNOWN = "no file found with id '{missing}'"
THEIRS = "no file found with id '{theirs}'"
CI_PARAM = "tool_resources.code_interpreter.file_ids"


def _upload(
    name: str, message: str, param: str | None = None, code: str | None = None, **kwargs: Any
) -> Case:
    return Case(name, "POST", "/files", 400, message, param, code, **kwargs)


def _expiring(anchor: str | None, seconds: str | None) -> dict[str, str]:
    fields = dict(PURPOSE)
    if anchor is not None:
        fields["expires_after[anchor]"] = anchor
    if seconds is not None:
        fields["expires_after[seconds]"] = seconds
    return fields


def _raw(*parts: tuple[bytes, bytes], close: bool = True) -> tuple[bytes, str]:
    return samples.multipart([samples.field_part("purpose", "assistants"), *parts], close=close)


def _ci(*file_ids: str) -> dict[str, Any]:
    return {"code_interpreter": {"file_ids": list(file_ids)}}


def _say(content: Any, **extra: Any) -> dict[str, Any]:
    return {"role": "user", "content": content, **extra}


def _attach(file_id: str, *tools: str) -> list[dict[str, Any]]:
    return [{"file_id": file_id, "tools": [{"type": t} for t in tools]}]


def _image(file_id: str, **extra: str) -> list[dict[str, Any]]:
    return [{"type": "image_file", "image_file": {"file_id": file_id, **extra}}]


def _url(url: str) -> list[dict[str, Any]]:
    return [{"type": "image_url", "image_url": {"url": url}}]


SUPPORTED = "Supported values are: 'assistants', 'batch', 'fine-tune', 'vision', and 'user_data'"
MESSAGES = "/threads/{thread}/messages"
CASES = [
    _upload("unknown purpose", f"Invalid value: 'nonsense'. {SUPPORTED}.", "purpose",
            "invalid_value", files={"file": TXT}, data={"purpose": "nonsense"}),
    # No Evals API here, and the spec's file object cannot carry `evals` (routes/files.py).
    _upload("evals is not served", f"Invalid value: 'evals'. {SUPPORTED}.", "purpose",
            "invalid_value", files={"file": TXT}, data={"purpose": "evals"}),
    _upload("assistants_output is the server's", "created by the server only", "purpose",
            "invalid_value", files={"file": TXT}, data={"purpose": "assistants_output"}),
    _upload("missing file", "Missing required parameter: 'file'.", "file",
            files={"purpose": (None, "assistants")}),
    _upload("missing purpose", "Missing required parameter: 'purpose'.", "purpose",
            files={"file": TXT}),
    _upload("file sent as a text field", "expected a file (a part with a filename)", "file",
            "invalid_type", files={"purpose": (None, "assistants"), "file": (None, "not a file")}),
    _upload("unknown form field", "Unrecognized request argument supplied: colour", "colour",
            files={"file": TXT}, data={**PURPOSE, "colour": "red"}),
    _upload("empty file", "the file is empty", "file", "invalid_value",
            files={"file": ("empty.txt", b"", "text/plain")}, data=PURPOSE),
    _upload("JSON instead of multipart", "expected multipart/form-data",
            json={"file": "hello", "purpose": "assistants"}),
    _upload("expires_after bad anchor", "Supported values are: 'created_at'.",
            "expires_after.anchor", "invalid_value", files={"file": TXT},
            data=_expiring("last_active_at", "3600")),
    _upload("expires_after too short", "Expected a value >= 3600, but got 60 instead.",
            "expires_after.seconds", "integer_below_min_value", files={"file": TXT},
            data=_expiring("created_at", "60")),
    _upload("expires_after too long", "Expected a value <= 2592000", "expires_after.seconds",
            "integer_above_max_value", files={"file": TXT},
            data=_expiring("created_at", "2592001")),
    _upload("expires_after seconds not a number", "expected an integer", "expires_after.seconds",
            "invalid_type", files={"file": TXT}, data=_expiring("created_at", "soon")),
    _upload("expires_after without seconds",
            "Missing required parameter: 'expires_after.seconds'.", "expires_after.seconds",
            files={"file": TXT}, data=_expiring("created_at", None)),
    _upload("expires_after without anchor", "Missing required parameter: 'expires_after.anchor'.",
            "expires_after.anchor", files={"file": TXT}, data=_expiring(None, "3600")),
    _upload("filename with a control character", "control character", "file", "invalid_value",
            raw=_raw(samples.file_part(b"bad\x01name.txt", b"data"))),
    _upload("filename not UTF-8", "not valid UTF-8", "file", "invalid_value",
            raw=_raw(samples.file_part(b"caf\xe9.txt", b"data"))),
    _upload("empty filename", "the filename is empty", "file", "invalid_value",
            raw=_raw(samples.file_part(b"", b"data"))),
    _upload("two files", "Duplicate parameter: 'file'.", "file",
            raw=_raw(samples.file_part(b"a.txt", b"1"), samples.file_part(b"b.txt", b"2"))),
    _upload("truncated multipart body", "could not parse the multipart/form-data body",
            raw=_raw(samples.file_part(b"a.txt", b"data"), close=False)),
    Case("retrieve unknown file", "GET", "/files/{missing}", 404, NO_SUCH + "{missing}", "id"),
    Case("delete unknown file", "DELETE", "/files/{missing}", 404, NO_SUCH + "{missing}", "id"),
    Case("content of unknown file", "GET", "/files/{missing}/content", 404,
         NO_SUCH + "{missing}", "id"),
    Case("retrieve another project's file", "GET", "/files/{theirs}", 404,
         NO_SUCH + "{theirs}", "id"),
    Case("delete another project's file", "DELETE", "/files/{theirs}", 404,
         NO_SUCH + "{theirs}", "id"),
    Case("content of another project's file", "GET", "/files/{theirs}/content", 404,
         NO_SUCH + "{theirs}", "id"),
    Case("the other project cannot see ours", "GET", "/files/{text}", 404, NO_SUCH + "{text}",
         "id", other_project=True),
    Case("list limit above 10000", "GET", "/files", 400, "Expected a value <= 10000", "limit",
         "integer_above_max_value", params={"limit": "10001"}),
    Case("list after unknown id", "GET", "/files", 400, "Invalid 'after'", "after",
         params={"after": "{missing}"}),
    Case("assistant with unknown code_interpreter file", "POST", "/assistants", 400, UNKNOWN,
         f"{CI_PARAM}[1]", "invalid_value",
         json={"model": "gpt-4o", "tool_resources": _ci("{text}", "{missing}")}),
    Case("assistant with another project's file", "POST", "/assistants", 400, THEIRS,
         f"{CI_PARAM}[0]", "invalid_value",
         json={"model": "gpt-4o", "tool_resources": _ci("{theirs}")}),
    Case("assistant modify with unknown file", "POST", "/assistants/{asst}", 400, UNKNOWN,
         f"{CI_PARAM}[0]", "invalid_value", json={"tool_resources": _ci("{missing}")}),
    Case("thread with unknown code_interpreter file", "POST", "/threads", 400, UNKNOWN,
         f"{CI_PARAM}[0]", "invalid_value", json={"tool_resources": _ci("{missing}")}),
    Case("thread modify with unknown file", "POST", "/threads/{thread}", 400, UNKNOWN,
         f"{CI_PARAM}[0]", "invalid_value", json={"tool_resources": _ci("{missing}")}),
    Case("thread message attaching an unknown file", "POST", "/threads", 400, UNKNOWN,
         "messages[0].attachments[0].file_id", "invalid_value",
         json={"messages": [_say("hi", attachments=_attach("{missing}", "code_interpreter"))]}),
    Case("message attaching another project's file", "POST", MESSAGES, 400, THEIRS,
         "attachments[0].file_id", "invalid_value",
         json=_say("hi", attachments=_attach("{theirs}"))),
    Case("attachment with an unknown tool", "POST", MESSAGES, 400,
         "Supported values are: 'code_interpreter' and 'file_search'.",
         "attachments[0].tools[0].type", "invalid_value",
         json=_say("hi", attachments=_attach("{text}", "function"))),
    Case("attachment without file_id", "POST", MESSAGES, 400,
         "Missing required parameter: 'attachments[0].file_id'.", "attachments[0].file_id",
         json=_say("hi", attachments=[{"tools": []}])),
    Case("image_file with an unknown file", "POST", MESSAGES, 400, UNKNOWN,
         "content[0].image_file.file_id", "invalid_value", json=_say(_image("{missing}"))),
    Case("image_file that is not an image", "POST", MESSAGES, 400, "is not an image",
         "content[1].image_file.file_id", "invalid_value",
         json=_say([{"type": "text", "text": "look"}, *_image("{text}")])),
    Case("image_file with a bad detail", "POST", MESSAGES, 400,
         "Supported values are: 'auto', 'low', and 'high'.", "content[0].image_file.detail",
         "invalid_value", json=_say(_image("{image}", detail="max"))),
    Case("image_url that is not a URL", "POST", MESSAGES, 400, "expected an http or https URL",
         "content[0].image_url.url", "invalid_value", json=_say(_url("ftp://example.com/a.png"))),
    Case("image_url data URL of a non-image", "POST", MESSAGES, 400,
         "expected an http or https URL", "content[0].image_url.url", "invalid_value",
         json=_say(_url("data:text/plain;base64,aGk="))),
    Case("run whose additional message attaches an unknown file", "POST",
         "/threads/{thread}/runs", 400, UNKNOWN,
         "additional_messages[0].attachments[0].file_id", "invalid_value",
         json={"assistant_id": "{asst}",
               "additional_messages": [_say("hi", attachments=_attach("{missing}"))]}),
    Case("create-and-run with an unknown thread file", "POST", "/threads/runs", 400, UNKNOWN,
         f"thread.{CI_PARAM}[0]", "invalid_value",
         json={"assistant_id": "{asst}", "thread": {"tool_resources": _ci("{missing}")}}),
    Case("create-and-run with an unknown tool_resources file", "POST", "/threads/runs", 400,
         UNKNOWN, f"{CI_PARAM}[0]", "invalid_value",
         json={"assistant_id": "{asst}", "tool_resources": _ci("{missing}")}),
    Case("create-and-run with an unknown image_file", "POST", "/threads/runs", 400, UNKNOWN,
         "thread.messages[0].content[0].image_file.file_id", "invalid_value",
         json={"assistant_id": "{asst}", "thread": {"messages": [_say(_image("{missing}"))]}}),
]  # fmt: skip


def test_the_table_is_big_and_names_are_unique() -> None:
    assert len(CASES) >= 30
    assert len({c.name for c in CASES}) == len(CASES)


def _snapshot(world: World) -> dict[str, Any]:
    client = world.client
    return {
        "rows": world.rows(),
        "blobs": blob_paths(world.stack),
        "files": [f.id for f in client.files.list()],
        "assistant": client.beta.assistants.retrieve(world.ids["asst"]).model_dump(),
        "thread": client.beta.threads.retrieve(world.ids["thread"]).model_dump(),
        "messages": [m.id for m in client.beta.threads.messages.list(world.ids["thread"])],
    }


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_request(case: Case, world: World) -> None:
    ids = world.ids
    key = world.other_key if case.other_project else world.key
    before = _snapshot(world)
    with world.stack.http(key) as http:
        kwargs: dict[str, Any] = {"params": _fill(case.params, ids)}
        if case.json is not None:
            kwargs["json"] = _fill(case.json, ids)
        if case.files is not None:
            kwargs["files"] = case.files
            kwargs["data"] = case.data
        if case.raw is not None:
            kwargs["content"], content_type = case.raw
            kwargs["headers"] = {"Content-Type": content_type}
        response = http.request(case.method, _fill(case.path, ids), **kwargs)
    after = _snapshot(world)

    assert response.status_code == case.status, response.text
    body = response.json()
    validate("ErrorResponse", body)
    error = body["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["type"] == "invalid_request_error"
    assert _fill(case.message, ids) in error["message"], error["message"]
    assert error["param"] == case.param
    assert error["code"] == case.code
    assert response.headers.get("x-should-retry") == "false"
    assert after == before, "a rejected request changed something"


def test_another_projects_file_is_like_no_file(world: World) -> None:
    """The same 404 body, byte for byte, as for an id that exists nowhere (only the id differs)."""
    with world.stack.http(world.key) as http:
        theirs = http.get(f"/files/{world.ids['theirs']}").json()
        nowhere = http.get(f"/files/{world.ids['missing']}").json()
    assert theirs["error"]["message"].replace(world.ids["theirs"], "ID") == nowhere["error"][
        "message"
    ].replace(world.ids["missing"], "ID")
    assert {k: v for k, v in theirs["error"].items() if k != "message"} == {
        k: v for k, v in nowhere["error"].items() if k != "message"
    }
    # The other project still has its file.
    assert world.other.files.retrieve(world.ids["theirs"]).filename == "theirs.txt"


def test_files_need_no_beta_header(world: World) -> None:
    with httpx.Client(
        base_url=world.stack.base_url, headers={"Authorization": f"Bearer {world.key}"}
    ) as http:
        assert http.get(f"/files/{world.ids['text']}").status_code == 200


# --- the S3 backend, end to end ---------------------------------------------------------------


@dataclass
class S3Stack:
    stack: Stack
    server: S3Server
    bucket: str


S3_CAP = 20 * MiB


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def s3_stack(
    request: pytest.FixtureRequest,
    temporal: TemporalDevServer,
    model: ScriptedModel,
    s3_server: S3Server,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[S3Stack]:
    bucket = f"assistants-{uuid.uuid4().hex[:10]}"
    s3_server.create_bucket(bucket)
    overrides = {
        "ASSISTANTS_FILES_BACKEND": "s3",
        "ASSISTANTS_FILES_S3_BUCKET": bucket,
        "ASSISTANTS_FILES_S3_ENDPOINT_URL": s3_server.endpoint_url,
        "ASSISTANTS_FILES_S3_REGION": REGION,
        "ASSISTANTS_FILES_S3_ACCESS_KEY_ID": ACCESS_KEY_ID,
        "ASSISTANTS_FILES_S3_SECRET_ACCESS_KEY": SECRET_ACCESS_KEY,
        "ASSISTANTS_FILES_S3_PREFIX": "durable",
        "ASSISTANTS_MAX_FILE_BYTES": str(S3_CAP),
    }
    with started_stack(
        request,
        name="files-s3",
        temporal_address=temporal.address,
        model=model,
        tmp_path_factory=tmp_path_factory,
        overrides=overrides,
    ) as stack:
        yield S3Stack(stack, s3_server, bucket)


def test_s3_backend_end_to_end(s3_stack: S3Stack, model: ScriptedModel) -> None:
    stack, server, bucket = s3_stack.stack, s3_stack.server, s3_stack.bucket
    client = stack.client()
    big = os.urandom(10 * MiB + 3)  # more than one 8 MiB part: a multipart upload
    created = upload(client, "big.bin", big, "assistants")
    image = upload(client, "pixel.png", samples.png(), "vision")
    keys = server.object_keys(bucket)
    assert len(keys) == 2 and all(k.startswith("durable/files/") for k in keys)
    assert any(k.endswith(created["id"]) for k in keys)
    assert client.files.content(created["id"]).content == big
    assert not (stack.workdir / "data" / "files").exists()  # nothing on the local disk

    # The worker reads the image from S3 for the model.
    model.reset()
    assistant = client.beta.assistants.create(model="gpt-4o")
    thread = client.beta.threads.create(
        messages=[
            {
                "role": "user",
                "content": [{"type": "image_file", "image_file": {"file_id": image["id"]}}],
            }
        ]
    )
    run = client.beta.threads.runs.create_and_poll(thread_id=thread.id, assistant_id=assistant.id)
    assert run.status == "completed", run.last_error
    user = [m for m in model.requests[-1]["messages"] if m["role"] == "user"][-1]
    url = user["content"][0]["image_url"]["url"]
    assert base64.b64decode(url.removeprefix("data:image/png;base64,")) == samples.png()

    # Too large: a 413, and nothing stored (no object, no multipart upload left open).
    rows = RowCounts(stack.database_url)
    try:
        before = rows()
        with pytest.raises(openai.APIStatusError) as raised:
            client.files.create(file=("huge.bin", os.urandom(S3_CAP + 1)), purpose="assistants")
        assert raised.value.status_code == 413
        assert raised.value.body == {
            "message": f"Maximum content size limit ({S3_CAP}) exceeded ({S3_CAP + 1} bytes read).",
            "type": "invalid_request_error",
            "param": "file",
            "code": "file_too_large",
        }
        assert rows() == before
    finally:
        rows.close()
    assert sorted(server.object_keys(bucket)) == sorted(keys)
    assert server.multipart_uploads(bucket) == []

    assert client.files.delete(created["id"]).deleted
    assert not any(k.endswith(created["id"]) for k in server.object_keys(bucket))
    with pytest.raises(openai.NotFoundError):
        client.files.content(created["id"])
