"""Safe deploys: a worker sent SIGTERM during a model call stops within its grace period, and the
run completes on another worker."""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Iterator

import pytest

from assistants.devserver import TemporalDevServer
from assistants.testing.scripted_model import Reply, ScriptedModel
from tests.conftest import started_stack, wait_for_status
from tests.support.messages import text_of
from tests.support.stack import Stack

pytestmark = pytest.mark.slow
GRACE_S = 1.0


@pytest.fixture(scope="module", params=["sqlite"])
def grace_stack(
    request: pytest.FixtureRequest,
    temporal: TemporalDevServer,
    model: ScriptedModel,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Stack]:
    with started_stack(
        request,
        name="grace",
        temporal_address=temporal.address,
        model=model,
        tmp_path_factory=tmp_path_factory,
        overrides={"ASSISTANTS_WORKER_SHUTDOWN_GRACE_S": str(GRACE_S), "PYTHONFAULTHANDLER": "1"},
    ) as stack:
        yield stack


def test_sigterm_during_a_model_call(grace_stack: Stack, model: ScriptedModel) -> None:
    stack = grace_stack
    client = stack.client()
    assistant = client.beta.assistants.create(model="gpt-4o")
    thread = client.beta.threads.create(messages=[{"role": "user", "content": "Explain"}])
    # A model call far longer than the grace period, then the answer the retry gets.
    model.enqueue(Reply(text="slowly " * 100, tokens_per_second=10), Reply(text="Done on B."))
    run = client.beta.threads.runs.create(thread_id=thread.id, assistant_id=assistant.id)
    deadline = time.monotonic() + 15
    while model.in_flight != 1:
        assert time.monotonic() < deadline, "the model call did not start"
        time.sleep(0.05)
    time.sleep(0.5)
    first = stack.workers[0]
    stack.start_worker()  # worker B, ready to take over

    started = time.monotonic()
    first.send_signal(signal.SIGTERM)
    try:
        code = first.wait(timeout=GRACE_S + 10)
    except subprocess.TimeoutExpired:
        first.send_signal(signal.SIGABRT)  # faulthandler dumps the stacks into the log
        first.wait()
        pytest.fail("the worker did not stop after SIGTERM")
    stopped_after = time.monotonic() - started
    # The grace period, plus process start-up work such as closing the store.
    assert stopped_after < GRACE_S + 5, f"stopped after {stopped_after:.1f}s"
    assert code == 0

    final = wait_for_status(client, thread.id, run.id, {"completed", "failed"}, timeout=30)
    assert final.status == "completed"
    messages = client.beta.threads.messages.list(thread_id=thread.id).data
    assert [m.role for m in messages] == ["assistant", "user"]
    assert text_of(messages[0]) == "Done on B."
    assert len(model.requests) == 2  # the interrupted call, then the retry on worker B
    log = (stack.workdir / "worker.log").read_text()
    assert "worker ready" in log
