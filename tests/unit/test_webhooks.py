"""Completion webhooks: signing and verification, the store (on SQLite and PostgreSQL) and the
delivery activities against a real HTTP receiver on loopback."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, get_args

import httpx
import pytest
from sqlalchemy import delete, inspect, text
from sqlalchemy.engine import Connection
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.runs import RunStateActivities
from activities.webhooks import WebhookActivities
from assistants.api.webhook_schemas import WebhookEvent
from assistants.devserver import free_port
from assistants.errors import NotFound
from assistants.store import Store
from assistants.store.migrations import LATEST, schema_version
from assistants.testing.postgres import PostgresCluster
from assistants.webhooks import sign, verify
from workflows.shared import WEBHOOK_EVENTS, FinishInput, WebhookDelivery

SECRET = "whsec_test"
_counter = iter(range(1_000_000))


# --- signing ------------------------------------------------------------------------------------


def _headers(secret: str, timestamp: int, body: bytes) -> dict[str, str]:
    return {
        "Webhook-Id": "evt_1",
        "Webhook-Timestamp": str(timestamp),
        "Webhook-Signature": sign(secret, timestamp, body),
    }


def test_sign_is_hmac_sha256_hex_of_timestamp_dot_body() -> None:
    expected = hmac.new(b"s", b"1700000000.{}", hashlib.sha256).hexdigest()
    assert sign("s", 1_700_000_000, b"{}") == f"v1={expected}"


def test_verify_accepts_a_good_signature() -> None:
    body = b'{"id":"evt_1"}'
    now = int(time.time())
    assert verify(SECRET, _headers(SECRET, now, body), body)
    # header names in any case (HTTP frameworks lower-case them)
    lowered = {k.lower(): v for k, v in _headers(SECRET, now, body).items()}
    assert verify(SECRET, lowered, body)


def test_verify_rejects_a_tampered_body() -> None:
    now = int(time.time())
    headers = _headers(SECRET, now, b'{"status":"failed"}')
    assert not verify(SECRET, headers, b'{"status":"completed"}')


def test_verify_rejects_a_wrong_secret() -> None:
    body = b"{}"
    now = int(time.time())
    assert not verify("whsec_other", _headers(SECRET, now, body), body)


def test_verify_rejects_stale_and_future_timestamps() -> None:
    body = b"{}"
    now = int(time.time())
    assert not verify(SECRET, _headers(SECRET, now - 301, body), body)
    assert not verify(SECRET, _headers(SECRET, now + 301, body), body)
    assert verify(SECRET, _headers(SECRET, now - 299, body), body)
    assert verify(SECRET, _headers(SECRET, now - 3600, body), body, tolerance_s=7200)


def test_verify_rejects_missing_or_malformed_headers() -> None:
    body = b"{}"
    now = int(time.time())
    good = _headers(SECRET, now, body)
    for name in ("Webhook-Timestamp", "Webhook-Signature"):
        assert not verify(SECRET, {k: v for k, v in good.items() if k != name}, body)
    assert not verify(SECRET, {**good, "Webhook-Timestamp": "soon"}, body)
    # the signature of another timestamp does not do
    assert not verify(SECRET, {**good, "Webhook-Timestamp": str(now - 1)}, body)
    assert not verify(SECRET, {**good, "Webhook-Signature": "v1=" + "0" * 64}, body)


def test_the_api_accepts_exactly_the_deliverable_events() -> None:
    assert get_args(WebhookEvent) == WEBHOOK_EVENTS


# --- the store ----------------------------------------------------------------------------------


@pytest.fixture(params=["sqlite", "postgres"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'db'}"
    else:
        cluster: PostgresCluster = request.getfixturevalue("postgres")
        url = cluster.create_database(f"webhooks_{next(_counter)}_{int(time.time())}")
    store = Store.from_url(url)
    await store.migrate()
    yield store
    await store.close()


async def test_create_list_delete(store: Store) -> None:
    first = await store.webhooks.create("p", "https://example.com/hook", [])
    second = await store.webhooks.create(
        "p", "http://127.0.0.1:9/x", ["thread.run.failed", "thread.run.completed"]
    )
    await store.webhooks.create("q", "https://example.com/q", [])

    assert first["id"].startswith("wh_") and first["object"] == "webhook"
    assert first["url"] == "https://example.com/hook" and first["events"] == []
    assert isinstance(first["created_at"], int)
    assert first["secret"].startswith("whsec_") and len(first["secret"]) > 40
    assert first["secret"] != second["secret"]
    assert second["events"] == ["thread.run.failed", "thread.run.completed"]

    listed = await store.webhooks.list("p")
    assert listed == {
        "object": "list",
        "data": [
            {k: v for k, v in second.items() if k != "secret"},
            {k: v for k, v in first.items() if k != "secret"},
        ],
        "first_id": second["id"],
        "last_id": first["id"],
        "has_more": False,
    }

    with pytest.raises(NotFound, match=f"No webhook found with id '{first['id']}'"):
        await store.webhooks.delete("q", first["id"])  # another project's
    assert await store.webhooks.delete("p", first["id"]) == {
        "id": first["id"],
        "object": "webhook.deleted",
        "deleted": True,
    }
    with pytest.raises(NotFound):
        await store.webhooks.delete("p", first["id"])
    assert [w["id"] for w in (await store.webhooks.list("p"))["data"]] == [second["id"]]
    assert (await store.webhooks.list("nobody"))["data"] == []


async def test_targets_and_get(store: Store) -> None:
    everything = await store.webhooks.create("p", "https://a.example/", [])
    failures = await store.webhooks.create("p", "https://b.example/", ["thread.run.failed"])
    await store.webhooks.create("q", "https://c.example/", [])

    assert await store.webhooks.targets("p", "thread.run.failed") == [
        everything["id"],
        failures["id"],
    ]
    assert await store.webhooks.targets("p", "thread.run.completed") == [everything["id"]]
    assert await store.webhooks.targets("nobody", "thread.run.completed") == []

    row = await store.webhooks.get(failures["id"])
    assert row is not None
    assert (row.url, row.secret, row.project_id) == ("https://b.example/", failures["secret"], "p")
    await store.webhooks.delete("p", failures["id"])
    assert await store.webhooks.get(failures["id"]) is None


async def test_migrations_bring_a_version_2_database_up_to_date(store: Store) -> None:
    def back_to_version_2(conn: Connection) -> None:
        conn.execute(text("DROP TABLE webhooks"))
        conn.execute(text("ALTER TABLE run_events DROP COLUMN created_ms"))
        conn.execute(delete(schema_version))  # a fresh database is stamped with LATEST only
        conn.execute(schema_version.insert().values(version=2, name="created", applied_at=0))

    await store.db.write(back_to_version_2)
    assert not await store.db.read(lambda conn: inspect(conn).has_table("webhooks"))
    # Later migrations find their tables already there (the fixture's database is current) and
    # must leave them as they are.
    assert await store.migrate() == list(range(3, LATEST + 1))
    assert await store.db.read(lambda conn: inspect(conn).has_table("webhooks"))
    columns = await store.db.read(
        lambda conn: {c["name"] for c in inspect(conn).get_columns("run_events")}
    )
    assert "created_ms" in columns
    created = await store.webhooks.create("p", "https://example.com/", [])
    assert await store.webhooks.targets("p", "thread.run.expired") == [created["id"]]
    assert await store.migrate() == []


# --- delivery -----------------------------------------------------------------------------------


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes
    valid: bool


@dataclass
class Receiver:
    """A real HTTP endpoint on loopback that checks each delivery's signature with `verify`,
    answers 401 to a bad one and `status` otherwise."""

    port: int
    secret: str = ""
    status: int = 200
    received: list[Received] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks"


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    state = Receiver(port=free_port())

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            headers = dict(self.headers.items())
            valid = verify(state.secret, headers, body)
            state.received.append(Received(headers=headers, body=body, valid=valid))
            self.send_response(state.status if valid else 401)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", state.port), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


async def _run(store: Store, project_id: str = "p", *, finished: bool = True) -> dict[str, Any]:
    """A run of a new assistant on a new thread, `completed` unless `finished` is False."""
    now = int(time.time())
    assistant = await store.assistants.create(
        project_id, {"model": "m", "tools": [], "metadata": {}}
    )
    thread = await store.threads.create(project_id, {}, None, [])
    run = await store.runs.create(
        project_id,
        thread["id"],
        {
            "assistant_id": assistant["id"],
            "created_at": now,
            "expires_at": now + 600,
            "model": "m",
            "instructions": "",
            "additional_instructions": None,
            "tools": [],
            "metadata": {"k": "v"},
            "temperature": None,
            "top_p": None,
            "max_prompt_tokens": None,
            "max_completion_tokens": None,
            "truncation_strategy": {"type": "auto", "last_messages": None},
            "response_format": None,
            "tool_choice": None,
            "parallel_tool_calls": True,
        },
        [],
    )
    return await store.runs.finish(run["id"], "completed") if finished else run


async def _webhook(store: Store, receiver: Receiver, events: list[str] | None = None) -> str:
    created = await store.webhooks.create("p", receiver.url, events or [])
    receiver.secret = created["secret"]
    webhook_id: str = created["id"]
    return webhook_id


@pytest.mark.parametrize("shared_client", [False, True], ids=["own-client", "shared-client"])
async def test_delivery_is_signed_and_verifiable(
    store: Store, receiver: Receiver, shared_client: bool
) -> None:
    run = await _run(store)
    webhook_id = await _webhook(store, receiver)
    delivery = WebhookDelivery(
        webhook_id=webhook_id, run_id=run["id"], event="thread.run.completed", delivery_id="evt_1"
    )
    async with httpx.AsyncClient() as http:
        activities = WebhookActivities(store, http if shared_client else None)
        before = int(time.time())
        await ActivityEnvironment().run(activities.deliver, delivery)

    [got] = receiver.received
    assert got.valid
    headers = {k.lower(): v for k, v in got.headers.items()}
    assert headers["content-type"] == "application/json"
    assert headers["webhook-id"] == "evt_1"
    assert before <= int(headers["webhook-timestamp"]) <= int(time.time())
    assert headers["webhook-signature"] == sign(
        receiver.secret, int(headers["webhook-timestamp"]), got.body
    )
    payload = json.loads(got.body)
    assert payload["id"] == "evt_1" and payload["object"] == "event"
    assert payload["type"] == "thread.run.completed"
    # When the event happened (from the run's event log), not when this attempt was sent.
    assert before - 5 <= payload["created_at"] <= int(headers["webhook-timestamp"])
    assert payload["data"] == run  # the run object, as the API serves it
    assert payload["data"]["status"] == "completed"


@pytest.mark.parametrize("status", [500, 503, 408, 429])
async def test_server_errors_are_retried(store: Store, receiver: Receiver, status: int) -> None:
    run = await _run(store)
    receiver.status = status
    delivery = WebhookDelivery(
        await _webhook(store, receiver), run["id"], "thread.run.completed", "e"
    )
    with pytest.raises(ApplicationError) as raised:
        await ActivityEnvironment().run(WebhookActivities(store).deliver, delivery)
    assert not raised.value.non_retryable
    assert raised.value.type == "webhook_failed"
    assert str(status) in str(raised.value)
    assert len(receiver.received) == 1 and receiver.received[0].valid


@pytest.mark.parametrize("status", [400, 404, 410])
async def test_client_errors_are_final(store: Store, receiver: Receiver, status: int) -> None:
    run = await _run(store)
    receiver.status = status
    delivery = WebhookDelivery(
        await _webhook(store, receiver), run["id"], "thread.run.completed", "e"
    )
    with pytest.raises(ApplicationError) as raised:
        await ActivityEnvironment().run(WebhookActivities(store).deliver, delivery)
    assert raised.value.non_retryable
    assert raised.value.type == "webhook_rejected"
    assert len(receiver.received) == 1 and receiver.received[0].valid


async def test_an_unreachable_receiver_is_retried(store: Store) -> None:
    run = await _run(store)
    created = await store.webhooks.create("p", f"http://127.0.0.1:{free_port()}/", [])
    delivery = WebhookDelivery(created["id"], run["id"], "thread.run.completed", "e")
    with pytest.raises(ApplicationError) as raised:
        await ActivityEnvironment().run(WebhookActivities(store).deliver, delivery)
    assert not raised.value.non_retryable
    assert raised.value.type == "webhook_failed"


async def test_a_deleted_webhook_gets_nothing(store: Store, receiver: Receiver) -> None:
    run = await _run(store)
    webhook_id = await _webhook(store, receiver)
    await store.webhooks.delete("p", webhook_id)
    delivery = WebhookDelivery(webhook_id, run["id"], "thread.run.completed", "e")
    await ActivityEnvironment().run(WebhookActivities(store).deliver, delivery)
    assert receiver.received == []


async def test_finishing_a_run_names_the_webhooks_to_notify(
    store: Store, receiver: Receiver
) -> None:
    everything = await _webhook(store, receiver)
    failures = await _webhook(store, receiver, ["thread.run.failed"])
    state = RunStateActivities(store)
    env = ActivityEnvironment()
    run = await _run(store, finished=False)
    failed = await env.run(state.finish, FinishInput(run["id"], "failed", project_id="p"))
    assert failed.status == "failed" and failed.webhooks == [everything, failures]
    # A run its answer already completed (the model activity ends it in the answer's commit):
    # the store's status stands, whatever the workflow concluded, and its subscribers are told.
    run = await _run(store)
    late = await env.run(state.finish, FinishInput(run["id"], "failed", project_id="p"))
    assert late.status == "completed" and late.webhooks == [everything]
    other = await env.run(state.finish, FinishInput(run["id"], "failed", project_id="q"))
    assert other.webhooks == []
