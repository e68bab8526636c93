"""Deployment plumbing, on real processes: `durable-assistants init` sets up a bare cluster (the
schema and the namespace's search attributes) idempotently, and `/readyz` of the API and of a
worker follows the store, the schema, Temporal and the worker's own shutdown.

The module has a PostgreSQL cluster and a Temporal dev server of its own (stopping them must not
disturb other tests); the Temporal server starts without search attributes, as a fresh cluster's
namespace has none, so `init` is what makes runs possible on it.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import update
from sqlalchemy.engine import Connection
from temporalio.api.operatorservice.v1 import ListSearchAttributesRequest
from temporalio.client import Client

from assistants.devserver import TemporalDevServer, free_port
from assistants.health import Readiness
from assistants.store import Store
from assistants.store.migrations import LATEST, schema_version
from assistants.testing.postgres import PostgresCluster
from assistants.testing.scripted_model import Reply, ScriptedModel
from tests.support.stack import Stack
from workflows.search_attributes import NAMES, RUN_STATUS

pytestmark = pytest.mark.slow
GRACE_S = 3.0
UP = {"database": "ok", "migrations": "ok", "temporal": "ok"}


@pytest.fixture(scope="module")
def pg() -> Iterator[PostgresCluster]:
    with PostgresCluster() as cluster:
        yield cluster


@pytest.fixture(scope="module")
def bare_temporal(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TemporalDevServer]:
    workdir = tmp_path_factory.mktemp("bare-temporal")
    server = TemporalDevServer(
        db_file=workdir / "temporal.db",
        log_file=workdir / "temporal.log",
        search_attributes=False,
    )
    with server:
        yield server


@pytest.fixture(scope="module")
def cluster(
    pg: PostgresCluster,
    bare_temporal: TemporalDevServer,
    model: ScriptedModel,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[Stack, list[str]]]:
    """`init` (twice), then an API and a worker with a health server, on the bare cluster."""
    stack = Stack(
        name="health",
        database_url=pg.create_database("health"),
        temporal_address=bare_temporal.address,
        model_base_url=model.base_url,
        workdir=tmp_path_factory.mktemp("health"),
        overrides={
            "ASSISTANTS_WORKER_HEALTH_PORT": str(free_port()),
            "ASSISTANTS_WORKER_SHUTDOWN_GRACE_S": str(GRACE_S),
        },
    )
    outputs = [stack.cli("init", "--wait", "30") for _ in range(2)]
    stack.start()
    try:
        yield stack, outputs
    finally:
        stack.stop()


@pytest.fixture
def stack(cluster: tuple[Stack, list[str]]) -> Stack:
    return cluster[0]


def _api_url(stack: Stack, path: str) -> str:
    return f"http://127.0.0.1:{stack.api_port}{path}"


def _worker_url(stack: Stack, path: str) -> str:
    return f"http://127.0.0.1:{stack.overrides['ASSISTANTS_WORKER_HEALTH_PORT']}{path}"


def _readiness(url: str, status: int, timeout_s: float = 30.0) -> dict[str, Any]:
    """Poll `url` until it answers `status`; its JSON body then."""
    deadline = time.monotonic() + timeout_s
    last: object = None
    while time.monotonic() < deadline:
        try:
            response = httpx.get(url, timeout=5)
        except httpx.HTTPError as error:
            last = error
        else:
            last = (response.status_code, response.text)
            if response.status_code == status:
                body: dict[str, Any] = response.json()
                return body
        time.sleep(0.2)
    raise AssertionError(f"{url} never answered {status}; last: {last}")


def _both_ready(stack: Stack) -> None:
    assert _readiness(_api_url(stack, "/readyz"), 200) == {"status": "ready", "checks": UP}
    worker = _readiness(_worker_url(stack, "/readyz"), 200)
    assert worker == {"status": "ready", "checks": {**UP, "worker": "ok"}}


# --- init --------------------------------------------------------------------------------------


async def test_init_sets_up_a_bare_cluster_idempotently(
    cluster: tuple[Stack, list[str]], bare_temporal: TemporalDevServer, model: ScriptedModel
) -> None:
    stack, (first, second) = cluster
    assert f"applied: [{LATEST}]" in first
    assert "added: " + ", ".join(sorted(NAMES)) in first
    assert "applied: nothing" in second and "added: nothing, all present" in second

    temporal = await Client.connect(bare_temporal.address)
    listing = await temporal.operator_service.list_search_attributes(
        ListSearchAttributesRequest(namespace="default")
    )
    assert set(NAMES) <= set(listing.custom_attributes)

    # A run (whose workflow upserts the attributes: an unregistered one fails its task) works.
    client = stack.client()
    assistant = client.beta.assistants.create(model="gpt-4o")
    thread = client.beta.threads.create(messages=[{"role": "user", "content": "Hi"}])
    model.enqueue(Reply(text="Hello."))
    run = client.beta.threads.runs.create_and_poll(thread_id=thread.id, assistant_id=assistant.id)
    assert run.status == "completed"
    deadline = time.monotonic() + 20
    while True:
        description = await temporal.get_workflow_handle(run.id).describe()
        status = description.typed_search_attributes.get(RUN_STATUS)
        if status == "completed" or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.2)
    assert status == "completed"


def _init(stack: Stack, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "assistants.cli", "init", "--wait", "0"],
        env={**stack.env(), **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_init_fails_clearly_when_a_dependency_is_unreachable(stack: Stack) -> None:
    dead = f"127.0.0.1:{free_port()}"
    no_temporal = _init(stack, ASSISTANTS_TEMPORAL_ADDRESS=dead)
    assert no_temporal.returncode == 1
    assert f"could not connect to Temporal at {dead}" in no_temporal.stderr

    url = f"postgresql+asyncpg://assistants:s3cret-pw@{dead}/assistants"
    no_database = _init(stack, ASSISTANTS_DATABASE_URL=url)
    assert no_database.returncode == 1
    assert "could not migrate the database: ConnectionRefusedError" in no_database.stderr
    assert "s3cret-pw" not in no_database.stderr + no_database.stdout


# --- readiness ---------------------------------------------------------------------------------


def test_ready_when_everything_is_up(stack: Stack) -> None:
    _both_ready(stack)
    for url in (_api_url(stack, "/healthz"), _worker_url(stack, "/healthz")):
        assert httpx.get(url).json() == {"status": "ok"}
    # No API key needed, as a probe has none; the worker's server answers nothing else.
    assert httpx.get(_worker_url(stack, "/v1/assistants")).status_code == 404
    assert httpx.post(_worker_url(stack, "/readyz")).status_code == 405
    head = httpx.head(_worker_url(stack, "/readyz"))
    assert (head.status_code, head.content) == (200, b"")


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
async def test_a_database_without_the_schema_is_not_ready(
    backend: str, pg: PostgresCluster, bare_temporal: TemporalDevServer, tmp_path: Path
) -> None:
    url = (
        f"sqlite:///{tmp_path / 'fresh.db'}" if backend == "sqlite" else pg.create_database("fresh")
    )
    store = Store.from_url(url)
    temporal = await Client.connect(bare_temporal.address)
    try:
        ready, body = await Readiness(store, temporal).report()
        assert not ready
        assert body == {
            "status": "not_ready",
            "checks": {
                "database": "ok",
                "migrations": f"not applied (code needs schema {LATEST})",
                "temporal": "ok",
            },
        }
        await store.migrate()
        assert await Readiness(store, temporal).report() == (
            True,
            {"status": "ready", "checks": UP},
        )
    finally:
        await store.close()


async def _set_schema_version(database_url: str, version: int) -> None:
    store = Store.from_url(database_url)

    def tx(conn: Connection) -> None:
        conn.execute(update(schema_version).values(version=version))

    try:
        await store.db.write(tx)
    finally:
        await store.close()


async def test_not_ready_while_the_schema_is_behind_the_code(stack: Stack) -> None:
    # As a database restored from an older backup.
    await _set_schema_version(stack.database_url, LATEST - 1)
    try:
        behind = f"behind (database schema {LATEST - 1}, code needs {LATEST})"
        body = _readiness(_api_url(stack, "/readyz"), 503)
        assert body == {"status": "not_ready", "checks": {**UP, "migrations": behind}}
        body = _readiness(_worker_url(stack, "/readyz"), 503)
        assert body["checks"]["migrations"] == behind
    finally:
        await _set_schema_version(stack.database_url, LATEST)
    _both_ready(stack)


def test_not_ready_while_postgres_is_down(stack: Stack, pg: PostgresCluster) -> None:
    _both_ready(stack)
    pg.pause()
    try:
        for url in (_api_url(stack, "/readyz"), _worker_url(stack, "/readyz")):
            body = _readiness(url, 503)
            assert body["status"] == "not_ready"
            assert body["checks"]["database"].startswith("unreachable ("), body
            assert body["checks"]["migrations"] == "unknown"
            assert body["checks"]["temporal"] == "ok"
        # Alive all the same: restarting the processes would not bring the database back.
        assert httpx.get(_api_url(stack, "/healthz")).status_code == 200
        assert httpx.get(_worker_url(stack, "/healthz")).status_code == 200
    finally:
        pg.resume()
    _both_ready(stack)


def test_not_ready_while_temporal_is_down(stack: Stack, bare_temporal: TemporalDevServer) -> None:
    _both_ready(stack)
    bare_temporal.stop()
    try:
        for url in (_api_url(stack, "/readyz"), _worker_url(stack, "/readyz")):
            body = _readiness(url, 503)
            assert body["checks"]["temporal"] != "ok", body
            assert body["checks"]["database"] == "ok"
        assert httpx.get(_worker_url(stack, "/healthz")).status_code == 200
    finally:
        bare_temporal.start()
    _both_ready(stack)


def test_a_sandbox_worker_serves_its_health_too(stack: Stack) -> None:
    port = free_port()
    with open(stack.workdir / "sandbox-health.log", "ab") as log:
        host = subprocess.Popen(
            [sys.executable, "-m", "assistants.cli", "sandbox-worker"],
            env={**stack.env(), "ASSISTANTS_WORKER_HEALTH_PORT": str(port)},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        body = _readiness(f"http://127.0.0.1:{port}/readyz", 200, timeout_s=60)
        assert body == {"status": "ready", "checks": {**UP, "worker": "ok"}}
        assert httpx.get(f"http://127.0.0.1:{port}/healthz").json() == {"status": "ok"}
    finally:
        host.send_signal(signal.SIGTERM)
        assert host.wait(timeout=30) == 0


def test_a_worker_is_not_ready_from_sigterm_until_it_exits(
    stack: Stack, model: ScriptedModel
) -> None:
    """SIGTERM during a model call: the worker drains for its grace period, and /readyz says
    503 all that time (a load balancer or Kubernetes stops counting on it at once)."""
    _both_ready(stack)
    client = stack.client()
    assistant = client.beta.assistants.create(model="gpt-4o")
    thread = client.beta.threads.create(messages=[{"role": "user", "content": "Explain"}])
    model.enqueue(Reply(text="slowly " * 100, tokens_per_second=10))
    client.beta.threads.runs.create(thread_id=thread.id, assistant_id=assistant.id)
    deadline = time.monotonic() + 15
    while model.in_flight != 1:
        assert time.monotonic() < deadline, "the model call did not start"
        time.sleep(0.05)

    worker = stack.workers[0]
    worker.send_signal(signal.SIGTERM)
    body = _readiness(_worker_url(stack, "/readyz"), 503, timeout_s=GRACE_S)
    assert worker.poll() is None  # still draining
    assert body["checks"]["worker"] == "shutting down"
    assert httpx.get(_worker_url(stack, "/healthz")).status_code == 200
    assert worker.wait(timeout=GRACE_S + 10) == 0
    stack.workers.clear()
