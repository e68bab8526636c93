"""The `local` backend: a stateful IPython kernel per session, inside nsjail on this host.

How a session lives:
- `start_session` makes a private directory (mode 0700) holding the kernel's connection file
  and its ZMQ `ipc://` sockets, and starts `nsjail ... -- <sandbox python> kernel_boot.py`
  with an empty environment (jail.py says what the jail is). It returns once the kernel
  answers on shell and iopub, then opens the sandbox's /mnt/data through
  `/proc/<kernel pid>/root` (before any user code ran) and keeps that descriptor: every file
  operation walks from it (datadir.py), and it keeps the files readable even after the kernel
  died.
- The worker watches the nsjail process: when it exits (an OOM kill, a crash, the CPU-time or
  lifetime limit) an execution in flight ends `lost` at once, with the reason.
- Wall-clock limit: at `timeout_s` the kernel gets Jupyter's `interrupt_request`
  (KeyboardInterrupt; variables are kept, status `timeout`); if it is still busy
  `interrupt_grace_s` later (code that ignores SIGINT, or is stuck in C), nsjail is told to kill
  the whole sandbox and the execution ends `lost`.
- The kernel's stdin is a pipe whose other end only this process holds: if the worker dies,
  even by SIGKILL, the kernel sees EOF and exits (kernel_boot.py), and nsjail's time limit
  is the backstop. Nothing is ever re-executed here.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import structlog
import zmq

from assistants.sandbox.base import (
    ExecutionResult,
    OnOutput,
    SandboxError,
    SandboxFile,
    SandboxLimits,
    SandboxUnavailable,
)
from assistants.sandbox.datadir import DataDir
from assistants.sandbox.jail import (
    BOOT_INSIDE,
    IPC_INSIDE,
    Cgroups,
    JailSpec,
    find_nsjail,
    probe,
    python_layout,
    session_uid,
    setup_cgroups,
)
from assistants.sandbox.kernel_client import Connection, KernelClient, KernelGone
from assistants.sandbox.output import OutputCollector

log = structlog.get_logger(__name__)

_LOG_TAIL_BYTES = 16 * 1024
_Outcome = Literal["idle", "timeout", "gone"]


@dataclass(frozen=True)
class LocalSandboxConfig:
    python: Path
    nsjail: Path | None = None
    runtime_dir: Path | None = None
    limits: SandboxLimits = field(default_factory=SandboxLimits)
    cgroups: Literal["auto", "off"] = "auto"
    uid_base: int = 1_500_000_000


class LocalSandboxSession:
    """One kernel behind one process (nsjail, for every session the backend makes)."""

    def __init__(
        self,
        session_id: str,
        proc: asyncio.subprocess.Process,
        client: KernelClient,
        limits: SandboxLimits,
        *,
        lifeline: int | None = None,
        host_dir: Path | None = None,
        owner: tuple[int, int] | None = None,
        on_close: Callable[[LocalSandboxSession], None] | None = None,
    ) -> None:
        self._session_id = session_id
        self._proc = proc
        self._client = client
        self._limits = limits
        self._lifeline = lifeline
        self._host_dir = host_dir
        self._owner = owner
        self._on_close = on_close
        self._started = time.monotonic()
        self._lock = asyncio.Lock()
        self._closed = False
        self._kill_reason: str | None = None
        self._data: DataDir | None = None
        self._data_fd: int | None = None
        self._tail = bytearray()
        self._exit = asyncio.ensure_future(proc.wait())
        self._reader = asyncio.ensure_future(self._read_log())
        self.kernel_pid: int | None = None

    # --- lifecycle -------------------------------------------------------------------------

    @property
    def session_id(self) -> str:
        return self._session_id

    @property
    def alive(self) -> bool:
        return not self._closed and self._proc.returncode is None

    @property
    def process_pid(self) -> int:
        return self._proc.pid

    def log_tail(self) -> str:
        return self._tail.decode(errors="replace")

    async def _read_log(self) -> None:
        # nsjail's own log lines and anything the kernel writes to its real stdout/stderr:
        # kept only as a bounded tail, for the reason when a sandbox dies.
        stream = self._proc.stdout
        if stream is None:
            return
        while chunk := await stream.read(65536):
            self._tail += chunk
            del self._tail[:-_LOG_TAIL_BYTES]

    async def wait_ready(self, *, open_data_dir: bool) -> None:
        try:
            await self._client.wait_ready(self._limits.start_timeout_s, asyncio.shield(self._exit))
        except KernelGone:
            await asyncio.wait({self._reader}, timeout=1)
            raise SandboxUnavailable(
                "code interpreter unavailable: the sandbox's kernel exited at start: "
                + _last_lines(self.log_tail())
            ) from None
        except TimeoutError:
            raise SandboxError(
                f"the sandbox's kernel did not answer within {self._limits.start_timeout_s:g} s"
            ) from None
        self.kernel_pid = _child_pid(self._proc.pid)
        if open_data_dir:
            if self.kernel_pid is None:
                raise SandboxError("cannot find the sandbox's kernel process")
            self._data_fd = _open_sandbox_data(self.kernel_pid)
            self._data = DataDir(self._data_fd, self._owner)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._on_close is not None:
            self._on_close(self)
        if self._proc.returncode is None:
            await self._kill("the session was closed")
        # An execution in flight now sees the sandbox gone; let it finish before the sockets go.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(5), self._lock:
                pass
        self._client.close()
        if self._lifeline is not None:
            os.close(self._lifeline)
            self._lifeline = None
        if self._data_fd is not None:
            os.close(self._data_fd)
            self._data_fd = None
            self._data = None
        self._reader.cancel()
        await asyncio.gather(self._reader, return_exceptions=True)
        if self._host_dir is not None:
            await asyncio.to_thread(shutil.rmtree, self._host_dir, True)

    async def _kill(self, reason: str) -> None:
        """End the whole sandbox: nsjail kills every process in it on SIGTERM (and removes the
        session's cgroups); SIGKILL to nsjail if it does not exit at once."""
        if self._kill_reason is None:
            self._kill_reason = reason
        if self._proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self._proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(asyncio.shield(self._exit), 3)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    self._proc.kill()
                await asyncio.shield(self._exit)
        log.info("sandbox killed", session_id=self._session_id, reason=reason)

    def _death_reason(self) -> str:
        if self._kill_reason is not None:
            return self._kill_reason
        rc = self._proc.returncode
        if rc is None:
            return "the sandbox stopped answering"
        sig = rc - 128 if rc > 128 else -rc if rc < 0 else 0
        limits = self._limits
        if time.monotonic() - self._started >= limits.session_max_lifetime_s:
            return f"the session reached its maximum lifetime ({limits.session_max_lifetime_s} s)"
        if sig == signal.SIGKILL:
            return (
                "the Python process was killed (SIGKILL), most likely because it ran out of "
                f"memory (limit {limits.memory_mb} MB)"
            )
        if sig == signal.SIGXCPU:
            return f"the Python process used up its CPU time ({limits.cpu_time_s} s)"
        if sig > 0:
            try:
                name = signal.Signals(sig).name
            except ValueError:
                name = str(sig)
            return f"the Python process died from signal {name}"
        return f"the Python process exited (status {rc})"

    # --- execution -------------------------------------------------------------------------

    async def execute(
        self, code: str, *, timeout_s: float, on_output: OnOutput | None = None
    ) -> ExecutionResult:
        async with self._lock:
            collector = OutputCollector(self._limits, on_output)
            loop = asyncio.get_running_loop()
            started = loop.time()

            async def lost() -> ExecutionResult:
                reason = self._death_reason()
                await collector.notice(f"[session lost: {reason}; its variables are gone]")
                return await collector.finish(
                    "lost", duration_s=loop.time() - started, error=reason
                )

            if not self.alive:
                return await lost()
            try:
                await self._drain(self._client.shell)
                msg_id = await self._client.send(
                    self._client.shell,
                    "execute_request",
                    {
                        "code": code,
                        "silent": False,
                        "store_history": True,
                        "user_expressions": {},
                        "allow_stdin": False,
                        "stop_on_error": False,
                    },
                )
                outcome = await self._pump(msg_id, collector, started + timeout_s)
                if outcome == "timeout":
                    await self._client.interrupt()
                    grace = self._limits.interrupt_grace_s
                    outcome = await self._pump(msg_id, collector, loop.time() + grace)
                    if outcome == "idle":
                        await collector.notice(
                            f"[execution interrupted: it ran longer than {timeout_s:g} s; the "
                            "session and its variables are kept]"
                        )
                        return await collector.finish(
                            "timeout",
                            duration_s=loop.time() - started,
                            error=f"execution timed out after {timeout_s:g} s",
                        )
                    if outcome == "timeout":
                        await self._kill(
                            f"the code ran longer than {timeout_s:g} s and did not stop within "
                            f"{grace:g} s of being interrupted, so the sandbox was killed"
                        )
                if outcome == "gone" or outcome == "timeout":
                    return await lost()
                status: Literal["ok", "error"] = "error" if collector.error is not None else "ok"
                return await collector.finish(status, duration_s=loop.time() - started)
            except BaseException:
                # The caller gave up (its run was cancelled, or `on_output` raised): stop the
                # code, keep the session.
                if self.alive:
                    with contextlib.suppress(Exception):
                        await asyncio.shield(self._client.interrupt())
                raise

    async def _pump(self, msg_id: str, collector: OutputCollector, deadline: float) -> _Outcome:
        """Feed the execution's iopub messages to `collector` until the kernel is idle again,
        the deadline passes, or the sandbox process ends."""
        loop = asyncio.get_running_loop()
        while True:
            remaining = deadline - loop.time()
            if remaining <= 0:
                return "timeout"
            recv = asyncio.ensure_future(self._client.recv(self._client.iopub))
            done, _ = await asyncio.wait(
                {recv, self._exit}, timeout=remaining, return_when=asyncio.FIRST_COMPLETED
            )
            if recv not in done:
                recv.cancel()
                await asyncio.gather(recv, return_exceptions=True)
                return "gone" if self._exit.done() else "timeout"
            msg = recv.result()
            if msg.get("parent_header", {}).get("msg_id") != msg_id:
                continue
            msg_type = msg["header"]["msg_type"]
            content: dict[str, Any] = msg.get("content") or {}
            if msg_type == "status" and content.get("execution_state") == "idle":
                return "idle"
            await collector.message(msg_type, content)

    async def _drain(self, sock: Any) -> None:
        """Drop replies nobody waits for (kernel_info, earlier executions) so they do not pile
        up over a long session."""
        while await sock.poll(0, zmq.POLLIN):
            await sock.recv_multipart()

    async def interrupt(self) -> None:
        if self.alive:
            await self._client.interrupt()

    # --- /mnt/data ---------------------------------------------------------------------------

    def _datadir(self) -> DataDir:
        if self._data is None:
            raise SandboxError("this session has no /mnt/data (closed?)")
        return self._data

    async def put_file(self, path: str, data: bytes) -> None:
        await asyncio.to_thread(self._datadir().write, path, data)

    async def list_files(self, *, max_files: int = 1000) -> list[SandboxFile]:
        return await asyncio.to_thread(self._datadir().list, max_files)

    async def read_file(self, path: str, *, max_bytes: int) -> bytes:
        return await asyncio.to_thread(self._datadir().read, path, max_bytes)


class LocalSandboxBackend:
    """Makes nsjail-backed sessions on this host; refuses (SandboxUnavailable) when it can't."""

    name = "local"

    def __init__(self, config: LocalSandboxConfig) -> None:
        self._config = config
        self._template: JailSpec | None = None
        self._check_lock = asyncio.Lock()
        self._sessions: set[LocalSandboxSession] = set()

    @property
    def cgroups_enabled(self) -> bool:
        return self._template is not None and self._template.cgroups.enabled

    async def check(self) -> None:
        """Probe once per backend (a trivial program in a jail like the real ones); a failure is
        not remembered, so installing what was missing is enough."""
        async with self._check_lock:
            if self._template is not None:
                return
            config = self._config
            nsjail = find_nsjail(config.nsjail)
            layout = python_layout(config.python)
            limits = config.limits
            cgroups = setup_cgroups(limits) if config.cgroups == "auto" else Cgroups()
            spec = JailSpec(nsjail, layout, limits, cgroups, session_uid(config.uid_base))
            reason = await probe(spec, limits.start_timeout_s)
            if reason is not None and cgroups.enabled:
                log.warning("sandbox cgroups refused; using rlimits only", reason=reason)
                spec = replace(spec, cgroups=Cgroups())
                reason = await probe(spec, limits.start_timeout_s)
            if reason is not None:
                raise SandboxUnavailable(
                    "code interpreter unavailable: no sandbox can be made on this host "
                    f"(nsjail: {reason}). User namespaces or root are needed; see the README."
                )
            self._template = spec
            log.info(
                "sandbox backend ready",
                backend=self.name,
                cgroups=spec.cgroups.enabled,
                as_root=spec.ids is not None,
            )

    async def start_session(self, session_id: str) -> LocalSandboxSession:
        await self.check()
        assert self._template is not None
        limits = self._config.limits
        ids = session_uid(self._config.uid_base)
        runtime = self._config.runtime_dir
        if runtime is not None:
            runtime.mkdir(parents=True, exist_ok=True)
        host_dir = Path(tempfile.mkdtemp(prefix="sbx-", dir=runtime))
        life_r, life_w = os.pipe()
        session: LocalSandboxSession | None = None
        try:
            ipc = host_dir / "k"
            ipc.mkdir(mode=0o700)
            connection = Connection.new()
            _write_private(ipc / "kernel.json", connection.kernel_file(f"{IPC_INSIDE}/s"), ids)
            if ids is not None:
                os.chown(ipc, *ids)
            spec = replace(self._template, ids=ids, ipc_dir=ipc)
            font_cache = spec.layout.font_cache
            boot = {
                "connection_file": f"{IPC_INSIDE}/kernel.json",
                "font_cache": str(font_cache) if font_cache else None,
                "max_text": limits.max_output_bytes,
                "max_images": limits.max_images,
                "max_image_bytes": limits.max_image_bytes,
            }
            proc = await asyncio.create_subprocess_exec(
                *spec.command([BOOT_INSIDE, json.dumps(boot)]),
                stdin=life_r,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
                env={},
                start_new_session=True,
            )
            os.close(life_r)
            life_r = -1
            client = KernelClient(connection, f"{ipc}/s")
            session = LocalSandboxSession(
                session_id,
                proc,
                client,
                limits,
                lifeline=life_w,
                host_dir=host_dir,
                owner=ids,
                on_close=self._sessions.discard,
            )
            await session.wait_ready(open_data_dir=True)
        except BaseException:
            if session is not None:
                await session.close()
            else:
                os.close(life_w)
                shutil.rmtree(host_dir, ignore_errors=True)
            if life_r >= 0:
                os.close(life_r)
            raise
        self._sessions.add(session)
        log.info("sandbox session started", session_id=session_id, pid=session.process_pid)
        return session

    async def aclose(self) -> None:
        await asyncio.gather(*(s.close() for s in list(self._sessions)), return_exceptions=True)


def _write_private(path: Path, payload: dict[str, Any], owner: tuple[int, int] | None) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o400)
    with os.fdopen(fd, "w") as handle:
        if owner is not None:
            os.fchown(handle.fileno(), *owner)
        json.dump(payload, handle)


def _child_pid(pid: int) -> int | None:
    """The jailed kernel: nsjail's only child."""
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        children = []
    if children:
        return int(children[0])
    for entry in Path("/proc").iterdir():  # kernels without CONFIG_PROC_CHILDREN
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                if int(fields[1]) == pid:
                    return int(entry.name)
    return None


def _open_sandbox_data(kernel_pid: int) -> int:
    """An fd of the sandbox's /mnt/data, taken before any user code ran (so nothing on the way
    can have been replaced), one component at a time without following links."""
    flags = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
    root = os.open(f"/proc/{kernel_pid}/root", flags)
    try:
        mnt = os.open("mnt", flags | os.O_NOFOLLOW, dir_fd=root)
    finally:
        os.close(root)
    try:
        return os.open("data", flags | os.O_NOFOLLOW, dir_fd=mnt)
    finally:
        os.close(mnt)


def _last_lines(text: str, count: int = 6) -> str:
    lines = [line for line in text.splitlines() if line.strip()]
    return " | ".join(lines[-count:]) or "no output"
