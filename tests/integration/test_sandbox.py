"""The local sandbox backend as code_interpreter uses it: a stateful Jupyter kernel in nsjail.

Real sandboxes (nsjail + the .venv-sandbox Python), no Temporal. One session is shared by the
tests that leave it as they found it; tests that end a session start their own.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import signal
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from assistants.config import Settings
from assistants.sandbox import (
    LocalSandboxBackend,
    LocalSandboxConfig,
    LocalSandboxSession,
    OutputChunk,
    SandboxBackend,
    SandboxSession,
    SandboxUnavailable,
    make_sandbox_backend,
)
from tests.support.sandbox import SANDBOX_PYTHON, TEST_LIMITS, sandbox_config

pytestmark = pytest.mark.timeout(120)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
async def backend() -> AsyncIterator[LocalSandboxBackend]:
    backend = LocalSandboxBackend(sandbox_config())
    yield backend
    await backend.aclose()


@pytest.fixture(scope="module")
async def session(backend: LocalSandboxBackend) -> AsyncIterator[SandboxSession]:
    session = await backend.start_session("thread_functional")
    yield session
    await session.close()


async def test_protocol_types(backend: LocalSandboxBackend, session: SandboxSession) -> None:
    assert isinstance(backend, SandboxBackend)
    assert isinstance(session, SandboxSession)
    assert session.alive and session.session_id == "thread_functional"


async def test_settings_build_the_local_backend() -> None:
    built = make_sandbox_backend(Settings(sandbox_python=SANDBOX_PYTHON))
    assert isinstance(built, LocalSandboxBackend) and built.name == "local"
    await built.check()
    await built.aclose()


async def test_state_persists_and_last_expression_is_displayed(session: SandboxSession) -> None:
    first = await session.execute("result = 2 + 2\nresult", timeout_s=30)
    assert (first.status, first.logs, first.error) == ("ok", "4", None)
    second = await session.execute("result * 10", timeout_s=30)
    assert second.logs == "40"


async def test_print_then_expression(session: SandboxSession) -> None:
    result = await session.execute("print('hello'); 6 * 7", timeout_s=30)
    assert result.status == "ok"
    assert result.logs == "hello\n42"


async def test_streamed_chunks_add_up_to_the_logs(session: SandboxSession) -> None:
    chunks: list[OutputChunk] = []

    async def on_output(chunk: OutputChunk) -> None:
        chunks.append(chunk)

    code = (
        "import sys, time\n"
        "for i in range(3):\n"
        "    print(i); time.sleep(0.3)\n"
        "sys.stderr.write('e\\n')\n"
        "'done'"
    )
    result = await session.execute(code, timeout_s=30, on_output=on_output)
    assert result.status == "ok"
    assert "".join(c.text for c in chunks) == result.logs == "0\n1\n2\ne\n'done'"
    assert [c.kind for c in chunks][-2:] == ["stderr", "result"]
    # streamed as the code runs (ipykernel flushes every 0.2 s), not as one lump at the end
    assert len([c for c in chunks if c.kind == "stdout"]) >= 2


async def test_traceback_is_an_error_with_logs(session: SandboxSession) -> None:
    result = await session.execute("print('before')\n1 / 0", timeout_s=30)
    assert result.status == "error"
    assert result.error is not None and "ZeroDivisionError: division by zero" in result.error
    assert result.logs.startswith("before\n")
    assert "ZeroDivisionError" in result.logs and "\x1b[" not in result.logs
    after = await session.execute("'still here'", timeout_s=30)
    assert after.logs == "'still here'"


async def test_matplotlib_plot_comes_back_as_png(session: SandboxSession) -> None:
    chunks: list[OutputChunk] = []

    async def on_output(chunk: OutputChunk) -> None:
        chunks.append(chunk)

    code = (
        "import matplotlib.pyplot as plt\n"
        "plt.plot([1, 2, 3], [3, 1, 2]); plt.title('t'); plt.show()"
    )
    result = await session.execute(code, timeout_s=60, on_output=on_output)
    assert result.status == "ok", result.logs
    assert len(result.images) == 1 and result.images[0].startswith(PNG_MAGIC)
    assert [c.image for c in chunks if c.kind == "image"] == result.images


async def test_csv_put_into_mnt_data_is_read_by_pandas(session: SandboxSession) -> None:
    await session.put_file("sales.csv", b"region,amount\nnorth,10\nsouth,32\n")
    result = await session.execute(
        "import pandas as pd\ndf = pd.read_csv('/mnt/data/sales.csv')\nint(df.amount.sum())",
        timeout_s=60,
    )
    assert (result.status, result.logs) == ("ok", "42")
    # Placed files belong to the sandboxed code: it may change and delete them.
    changed = await session.execute(
        "open('/mnt/data/sales.csv', 'a').write('east,1\\n')", timeout_s=30
    )
    assert changed.status == "ok", changed.logs
    assert (await session.read_file("sales.csv", max_bytes=1000)).endswith(b"east,1\n")


async def test_written_files_are_listed_and_read_back_byte_identical(
    session: SandboxSession,
) -> None:
    payload = os.urandom(200_000)
    await session.put_file("in/blob.bin", payload)
    code = (
        "import hashlib, os\n"
        "data = open('/mnt/data/in/blob.bin', 'rb').read()\n"
        "os.makedirs('/mnt/data/out/deep', exist_ok=True)\n"
        "open('/mnt/data/out/deep/copy.bin', 'wb').write(data[::-1])\n"
        "open('/mnt/data/out/note.txt', 'w').write('héllo')\n"
        "hashlib.sha256(data).hexdigest()"
    )
    result = await session.execute(code, timeout_s=30)
    assert result.logs == repr(hashlib.sha256(payload).hexdigest())
    listing = {f.path: f.size for f in await session.list_files()}
    assert listing["in/blob.bin"] == len(payload)
    assert listing["out/deep/copy.bin"] == len(payload)
    assert listing["out/note.txt"] == len("héllo".encode())
    assert await session.read_file("out/deep/copy.bin", max_bytes=len(payload)) == payload[::-1]
    assert await session.read_file("/mnt/data/out/note.txt", max_bytes=100) == "héllo".encode()


async def test_interrupt_stops_running_code_and_keeps_state(session: SandboxSession) -> None:
    await session.execute("kept = 'yes'", timeout_s=30)
    task = asyncio.create_task(session.execute("import time\ntime.sleep(60)", timeout_s=90))
    await asyncio.sleep(0.5)
    await session.interrupt()
    result = await asyncio.wait_for(task, 10)
    assert result.status == "error" and "KeyboardInterrupt" in result.logs
    assert (await session.execute("kept", timeout_s=30)).logs == "'yes'"


async def test_cancelling_an_execution_interrupts_it(session: SandboxSession) -> None:
    task = asyncio.create_task(session.execute("import time\ntime.sleep(60)", timeout_s=90))
    await asyncio.sleep(0.5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert session.alive
    result = await asyncio.wait_for(session.execute("'next'", timeout_s=30), 10)
    assert (result.status, result.logs) == ("ok", "'next'")


async def test_a_crashing_kernel_is_reported_lost_at_once(backend: LocalSandboxBackend) -> None:
    session = await backend.start_session("thread_crash")
    try:
        result = await session.execute("import ctypes\nctypes.string_at(0)", timeout_s=60)
        assert result.status == "lost" and result.duration_s < 10
        assert result.error is not None and "SIGSEGV" in result.error
        assert "[session lost:" in result.logs
        assert not session.alive
        again = await session.execute("1 + 1", timeout_s=30)  # never re-run, never hangs
        assert again.status == "lost"
    finally:
        await session.close()
    exiting = await backend.start_session("thread_exit")
    try:
        result = await exiting.execute("import os\nos._exit(3)", timeout_s=60)
        assert result.status == "lost" and result.error is not None
        assert "exited (status 3)" in result.error
    finally:
        await exiting.close()
    killed = await backend.start_session("thread_killed")
    try:  # killed from outside (an operator, the OOM killer) in the middle of a call
        task = asyncio.create_task(killed.execute("import time\ntime.sleep(60)", timeout_s=90))
        await asyncio.sleep(0.5)
        assert isinstance(killed, LocalSandboxSession) and killed.kernel_pid is not None
        os.kill(killed.kernel_pid, signal.SIGKILL)
        result = await asyncio.wait_for(task, 10)
        assert result.status == "lost" and "SIGKILL" in (result.error or "")
    finally:
        await killed.close()


async def test_no_sandbox_means_no_execution(tmp_path: Path) -> None:
    broken = [
        LocalSandboxConfig(python=SANDBOX_PYTHON, nsjail=Path("/bin/false"), limits=TEST_LIMITS),
        LocalSandboxConfig(python=tmp_path / "missing" / "python", limits=TEST_LIMITS),
        LocalSandboxConfig(python=SANDBOX_PYTHON, nsjail=tmp_path / "nsjail", limits=TEST_LIMITS),
    ]
    reasons = []
    for config in broken:
        backend = LocalSandboxBackend(config)
        with pytest.raises(SandboxUnavailable) as raised:
            await backend.start_session("thread_x")
        reasons.append(str(raised.value))
        await backend.aclose()
    assert all(r.startswith("code interpreter unavailable:") for r in reasons)
    assert "no sandbox can be made" in reasons[0]
    assert "make sandbox" in reasons[1]
    assert "not executable" in reasons[2]


async def test_closing_mid_call_ends_the_call_lost(backend: LocalSandboxBackend) -> None:
    session = await backend.start_session("thread_close")
    task = asyncio.create_task(session.execute("import time\ntime.sleep(60)", timeout_s=90))
    await asyncio.sleep(0.5)
    await asyncio.wait_for(session.close(), 10)
    result = await asyncio.wait_for(task, 10)
    assert (result.status, result.error) == ("lost", "the session was closed")
    assert not session.alive
