"""`/v1/webhooks` (an extension of the Assistants API) through the real API process: create (the
secret shown once), list (never the secret), delete, 404s scoped to the project, and 400s in
OpenAI's error shape for bad input."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from assistants.ids import new_id
from tests.support.stack import Stack

OBJECT_KEYS = {"id", "object", "created_at", "url", "events"}


@pytest.fixture(scope="module")
def other_key(stack: Stack) -> str:
    key = stack.cli("keys", "create", "--project", "webhooks-other").splitlines()[0].strip()
    assert key and key != stack.api_key
    return key


@pytest.fixture(autouse=True)
def _no_webhooks_left(stack: Stack, other_key: str) -> Iterator[None]:
    """The shared stack's later runs must not POST to these tests' made-up receivers (they are
    never reachable here): each delivery would retry for ten minutes, and the run's workflow
    would stay open until then."""
    yield
    for key in (None, other_key):
        with stack.http(key) as http:
            for webhook in http.get("/webhooks").json()["data"]:
                assert http.delete(f"/webhooks/{webhook['id']}").status_code == 200


def _create(stack: Stack, body: dict[str, Any], api_key: str | None = None) -> dict[str, Any]:
    with stack.http(api_key) as http:
        response = http.post("/webhooks", json=body)
    assert response.status_code == 200, response.text
    created: dict[str, Any] = response.json()
    return created


def _listed(stack: Stack, api_key: str | None = None) -> dict[str, Any]:
    with stack.http(api_key) as http:
        response = http.get("/webhooks")
    assert response.status_code == 200, response.text
    listed: dict[str, Any] = response.json()
    return listed


def test_create_list_delete(stack: Stack) -> None:
    everything = _create(stack, {"url": "https://example.com/hooks"})
    assert set(everything) == OBJECT_KEYS | {"secret"}
    assert everything["id"].startswith("wh_") and everything["object"] == "webhook"
    assert everything["url"] == "https://example.com/hooks" and everything["events"] == []
    assert isinstance(everything["created_at"], int)
    assert everything["secret"].startswith("whsec_")

    failures = _create(
        stack,
        {
            "url": "http://127.0.0.1:8080/x?y=1",
            "events": ["thread.run.failed", "thread.run.expired", "thread.run.failed"],
        },
    )
    assert failures["events"] == ["thread.run.failed", "thread.run.expired"]
    assert failures["secret"] != everything["secret"]

    listed = _listed(stack)
    assert listed["object"] == "list" and listed["has_more"] is False
    assert listed["first_id"] == listed["data"][0]["id"]
    assert listed["last_id"] == listed["data"][-1]["id"]
    by_id = {w["id"]: w for w in listed["data"]}
    for created in (everything, failures):
        assert by_id[created["id"]] == {k: v for k, v in created.items() if k != "secret"}
    assert all(set(w) == OBJECT_KEYS for w in listed["data"])  # the secret is never listed

    with stack.http() as http:
        deleted = http.delete(f"/webhooks/{everything['id']}")
        assert deleted.status_code == 200, deleted.text
        assert deleted.json() == {
            "id": everything["id"],
            "object": "webhook.deleted",
            "deleted": True,
        }
        again = http.delete(f"/webhooks/{everything['id']}")
        assert again.status_code == 404
    remaining = {w["id"] for w in _listed(stack)["data"]}
    assert everything["id"] not in remaining and failures["id"] in remaining


def test_unknown_webhook_is_404(stack: Stack) -> None:
    webhook_id = new_id("wh")
    with stack.http() as http:
        response = http.delete(f"/webhooks/{webhook_id}")
    assert response.status_code == 404
    assert response.json() == {
        "error": {
            "message": f"No webhook found with id '{webhook_id}'.",
            "type": "invalid_request_error",
            "param": None,
            "code": None,
        }
    }


def test_another_projects_webhook_does_not_exist(stack: Stack, other_key: str) -> None:
    mine = _create(stack, {"url": "https://example.com/mine"})
    theirs = _create(stack, {"url": "https://example.com/theirs"}, api_key=other_key)

    with stack.http(other_key) as http:
        response = http.delete(f"/webhooks/{mine['id']}")
    assert response.status_code == 404
    assert response.json()["error"]["message"] == f"No webhook found with id '{mine['id']}'."

    my_ids = {w["id"] for w in _listed(stack)["data"]}
    their_ids = {w["id"] for w in _listed(stack, other_key)["data"]}
    assert mine["id"] in my_ids and theirs["id"] not in my_ids
    assert theirs["id"] in their_ids and mine["id"] not in their_ids


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({}, "url"),
        ({"url": 42}, "url"),
        ({"url": "ftp://example.com/hooks"}, "url"),
        ({"url": "example.com/hooks"}, "url"),
        ({"url": "https://"}, "url"),
        ({"url": "https://example.com/" + "a" * 2048}, "url"),
        ({"url": "https://example.com/", "events": ["thread.run.created"]}, "events[0]"),
        ({"url": "https://example.com/", "events": "thread.run.failed"}, "events"),
        ({"url": "https://example.com/", "secret": "mine"}, "secret"),
    ],
    ids=[
        "missing-url",
        "url-not-a-string",
        "ftp-url",
        "relative-url",
        "url-without-host",
        "url-too-long",
        "unknown-event",
        "events-not-a-list",
        "unknown-field",
    ],
)
def test_bad_input_is_400(stack: Stack, body: dict[str, Any], param: str) -> None:
    before = {w["id"] for w in _listed(stack)["data"]}
    with stack.http() as http:
        response = http.post("/webhooks", json=body)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert error["param"] == param
    assert error["message"]
    assert {w["id"] for w in _listed(stack)["data"]} == before
