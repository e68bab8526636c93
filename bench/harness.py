"""What the benchmarks share: the system under test as real processes (`durable-assistants dev`,
or PostgreSQL + a Temporal dev server + separate `api` and `worker` processes), the scripted model
server as its own process, SDK clients sized for many concurrent requests, percentiles,
per-process CPU time, and writing results (JSON) and tables."""

from __future__ import annotations

import contextlib
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import httpx2
import openai

from assistants.devserver import TemporalDevServer, free_port
from assistants.testing.postgres import PostgresCluster

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
_TICKS = os.sysconf("SC_CLK_TCK")


def pct(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def summary(values: Sequence[float]) -> dict[str, float]:
    """p50/p95/mean in milliseconds of durations given in seconds."""
    return {
        "p50_ms": round(pct(values, 0.5) * 1000, 1),
        "p95_ms": round(pct(values, 0.95) * 1000, 1),
        "mean_ms": round(statistics.mean(values) * 1000, 1),
    }


def added(measured: Sequence[float], baseline: Sequence[float]) -> dict[str, float]:
    """What a measurement adds over its baseline: the difference of the p50s and of the p95s."""
    return {
        "p50_ms": round((pct(measured, 0.5) - pct(baseline, 0.5)) * 1000, 1),
        "p95_ms": round((pct(measured, 0.95) - pct(baseline, 0.95)) * 1000, 1),
    }


# --- CPU time per process ----------------------------------------------------------------------


def _stat(pid: int) -> list[str]:
    # The command name (field 2) may hold spaces and parentheses: split after the last ")".
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def cpu_seconds(pid: int) -> float:
    """utime + stime of one process (all its threads)."""
    fields = _stat(pid)
    return (int(fields[11]) + int(fields[12])) / _TICKS


def children(pid: int) -> list[int]:
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(FileNotFoundError):
            found += [int(c) for c in (task / "children").read_text().split()]
    return found


def tree_cpu_seconds(pid: int) -> float:
    """CPU of a process and all its descendants: each live one's utime + stime, plus cutime +
    cstime, which hold the CPU of descendants already exited and reaped (PostgreSQL's backends,
    short-lived helpers)."""
    try:
        fields = _stat(pid)
        total = sum(int(f) for f in fields[11:15]) / _TICKS
        kids = children(pid)
    except (FileNotFoundError, ProcessLookupError):
        return 0.0  # exited between listing and reading: its time is in its parent's cutime
    return total + sum(tree_cpu_seconds(kid) for kid in kids)


@dataclass
class Role:
    """Processes measured together: `tree` counts each one's descendants too."""

    name: str
    pids: list[int]
    tree: bool = True

    def cpu(self) -> float:
        measure = tree_cpu_seconds if self.tree else cpu_seconds
        return sum(measure(pid) for pid in self.pids)


def clients_role() -> Role:
    """The benchmark's own process: the SDK clients (without its child processes)."""
    return Role("clients (benchmark process)", [os.getpid()], tree=False)


class CpuMeter:
    """CPU seconds of each role between `start()` and `stop()`, reported as ms per unit (run)."""

    def __init__(self, roles: Iterable[Role]) -> None:
        self.roles = list(roles)
        self._before: dict[str, float] = {}
        self._after: dict[str, float] = {}

    def _sample(self) -> dict[str, float]:
        return {role.name: role.cpu() for role in self.roles}

    def start(self) -> None:
        self._before = self._sample()

    def stop(self) -> None:
        self._after = self._sample()

    def seconds(self) -> dict[str, float]:
        return {name: self._after[name] - self._before[name] for name in self._before}

    def ms_per(self, units: int) -> dict[str, float]:
        used = self.seconds()
        result = {name: round(s * 1000 / max(units, 1), 1) for name, s in used.items()}
        result["total"] = round(sum(used.values()) * 1000 / max(units, 1), 1)
        return result


# --- processes ---------------------------------------------------------------------------------


def _wait_healthy(port: int, proc: subprocess.Popen[bytes], log: Path, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"process exited ({proc.returncode}); see {log}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).is_success:
                return
        time.sleep(0.2)
    raise TimeoutError(f"not healthy in {timeout_s:.0f} s; see {log}")


def _passed_through() -> dict[str, str]:
    """Settings to compare (e.g. BENCH_ASSISTANTS_SEARCH_ATTRIBUTES=false) pass through."""
    return {
        k.removeprefix("BENCH_"): v
        for k, v in os.environ.items()
        if k.startswith("BENCH_ASSISTANTS_")
    }


def server_source() -> Path:
    """Where the server processes' code comes from: this checkout, or `BENCH_SOURCE` (another
    checkout, e.g. a `git worktree` of an earlier commit) to measure a before and an after
    back to back with the same benchmark, clients and model server. The server runs with that
    directory as its working directory, which `python -m` puts first on `sys.path` (ahead of
    the editable install's finder)."""
    return Path(os.environ.get("BENCH_SOURCE") or ROOT)


def _base_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("ASSISTANTS_")}


class ModelServer:
    """bench/model_server.py as its own process (its event loop does not share our GIL)."""

    def __init__(
        self, *, ttft_s: float = 0.0, tokens_per_s: float = 0.0, mode: str | None = None
    ) -> None:
        self.args = [str(ttft_s), str(tokens_per_s), *([mode] if mode else [])]
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self) -> subprocess.Popen[bytes]:
        script = str(ROOT / "bench" / "model_server.py")
        self.proc = subprocess.Popen(
            [sys.executable, script, str(self.port), *self.args], stdout=subprocess.PIPE
        )
        assert self.proc.stdout is not None and self.proc.stdout.readline().strip() == b"ready"
        return self.proc

    def role(self) -> Role:
        assert self.proc is not None
        return Role("model server", [self.proc.pid])


def _terminate(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


class DevProcesses:
    """`durable-assistants dev` (fresh data dir, SQLite) plus the scripted model server."""

    def __init__(
        self,
        workdir: Path,
        *,
        ttft_s: float = 0.0,
        tokens_per_s: float = 0.0,
        model_mode: str | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        self.workdir = workdir
        self.model = ModelServer(ttft_s=ttft_s, tokens_per_s=tokens_per_s, mode=model_mode)
        self.extra_env = env or {}
        self.api_port = free_port()
        self.temporal_port = free_port()
        self.key = "sk-bench"
        self.procs: list[subprocess.Popen[bytes]] = []
        self.dev: subprocess.Popen[bytes] | None = None

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}/v1"

    @property
    def api_urls(self) -> list[str]:
        return [self.api_url]

    @property
    def model_url(self) -> str:
        return self.model.url

    @property
    def temporal_address(self) -> str:
        return f"127.0.0.1:{self.temporal_port}"

    @classmethod
    def with_tool_rounds(cls, workdir: Path) -> DevProcesses:
        """`dev` whose model, offered tools, calls the first one once (otherwise it answers at
        once), and whose worker runs the test suite's registered tools (`get_weather`, …)."""
        return cls(
            workdir,
            model_mode="tool-rounds",
            env={"ASSISTANTS_TOOL_MODULES": "tests.support.tools"},
        )

    def start(self) -> None:
        self.procs.append(self.model.start())
        env = _base_env() | {
            "ASSISTANTS_DATA_DIR": str(self.workdir / "data"),
            "ASSISTANTS_MODEL_BASE_URL": self.model_url,
            "ASSISTANTS_API_PORT": str(self.api_port),
            "ASSISTANTS_TEMPORAL_ADDRESS": self.temporal_address,
            "ASSISTANTS_TEMPORAL_UI_PORT": str(free_port()),
            "ASSISTANTS_BOOTSTRAP_API_KEY": self.key,
            "ASSISTANTS_LOG_LEVEL": "WARNING",
        }
        env |= self.extra_env | _passed_through()
        log = self.workdir / "dev.log"
        with open(log, "wb") as out:  # the child keeps its own handle
            self.dev = subprocess.Popen(
                [sys.executable, "-m", "assistants.cli", "dev"],
                env=env,
                stdout=out,
                stderr=out,
                cwd=server_source(),
            )
        self.procs.append(self.dev)
        _wait_healthy(self.api_port, self.dev, log, 90)

    def roles(self) -> list[Role]:
        """`dev` hosts the API and the worker in one process (their CPU cannot be told apart);
        its children are the Temporal dev server (and, with code_interpreter, sandboxes)."""
        assert self.dev is not None
        temporal: list[int] = []
        other: list[int] = []
        for kid in children(self.dev.pid):
            name = Path(f"/proc/{kid}/comm").read_text().strip()
            (temporal if name.startswith("temporal") else other).append(kid)
        roles = [
            Role("dev: API + worker", [self.dev.pid], tree=False),
            Role("temporal server", temporal),
        ]
        if other:
            roles.append(Role("dev's other children (sandboxes)", other))
        return [*roles, self.model.role(), clients_role()]

    def stop(self) -> None:
        for proc in reversed(self.procs):
            _terminate(proc)
        RESULTS.mkdir(exist_ok=True)
        log = self.workdir / "dev.log"
        if log.exists():
            (RESULTS / "dev.log").write_bytes(log.read_bytes())


class SplitProcesses:
    """The production shape: a throw-away PostgreSQL, a separate Temporal dev server, the
    scripted model, and any number of `durable-assistants api` and `worker` processes on one
    task queue. Add processes with `add_api()` / `add_worker()` between measurements."""

    def __init__(
        self,
        workdir: Path,
        *,
        ttft_s: float = 0.0,
        tokens_per_s: float = 0.0,
        model_mode: str | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        self.workdir = workdir
        self.model = ModelServer(ttft_s=ttft_s, tokens_per_s=tokens_per_s, mode=model_mode)
        self.extra_env = env or {}
        self.key = "sk-bench"
        self.postgres = PostgresCluster()
        self.temporal = TemporalDevServer(
            db_file=workdir / "temporal" / "temporal.db",
            log_file=workdir / "temporal" / "temporal.log",
        )
        self.apis: list[tuple[int, subprocess.Popen[bytes]]] = []
        self.workers: list[subprocess.Popen[bytes]] = []

    @property
    def api_urls(self) -> list[str]:
        return [f"http://127.0.0.1:{port}/v1" for port, _ in self.apis]

    @property
    def model_url(self) -> str:
        return self.model.url

    @property
    def temporal_address(self) -> str:
        return self.temporal.address

    @property
    def postgres_log(self) -> Path:
        assert self.postgres.directory is not None
        return self.postgres.directory / "server.log"

    def env(self, port: int | None = None, db_user: str | None = None) -> dict[str, str]:
        """A process's settings; `port`: the API's port (an API) or the health port (a worker);
        `db_user`: connect as this PostgreSQL role (bench/breakdown.py tells processes apart in
        the server's statement log by it)."""
        url = self.postgres.url
        if db_user is not None:
            url = url.replace("://postgres@", f"://{db_user}@", 1)
        env = _base_env() | {
            "ASSISTANTS_DATABASE_URL": url,
            "ASSISTANTS_TEMPORAL_ADDRESS": self.temporal.address,
            "ASSISTANTS_TASK_QUEUE": "assistants-bench",
            "ASSISTANTS_MODEL_BASE_URL": self.model_url,
            "ASSISTANTS_BOOTSTRAP_API_KEY": self.key,
            "ASSISTANTS_DATA_DIR": str(self.workdir / "data"),
            "ASSISTANTS_LOG_LEVEL": "WARNING",
            # Sandbox hosts are their own processes in production; none is needed here.
            "ASSISTANTS_SANDBOX_WORKER": "false",
        }
        if port is not None:
            env["ASSISTANTS_API_PORT"] = str(port)
            env["ASSISTANTS_WORKER_HEALTH_PORT"] = str(port)  # each worker its own
        return env | self.extra_env | _passed_through()

    def _spawn(
        self, command: str, log_name: str, port: int, db_user: str | None
    ) -> subprocess.Popen[bytes]:
        with open(self.workdir / log_name, "ab") as out:
            return subprocess.Popen(
                [sys.executable, "-m", "assistants.cli", command],
                env=self.env(port, db_user),
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=server_source(),
            )

    def start(self, apis: int = 1, workers: int = 1) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.postgres.start()
        self.temporal.start()
        self.model.start()
        for _ in range(apis):
            self.add_api()  # the first one applies the migrations
        for _ in range(workers):
            self.add_worker()

    def add_api(self, db_user: str | None = None) -> None:
        port = free_port()
        name = f"api-{len(self.apis) + 1}.log"
        proc = self._spawn("api", name, port, db_user)
        self.apis.append((port, proc))
        _wait_healthy(port, proc, self.workdir / name, 90)

    def add_worker(self, db_user: str | None = None) -> None:
        name = f"worker-{len(self.workers) + 1}.log"
        proc = self._spawn("worker", name, free_port(), db_user)
        self.workers.append(proc)
        self._wait_polling(proc, self.workdir / name)

    def _wait_polling(self, proc: subprocess.Popen[bytes], log: Path) -> None:
        """Until the worker polls the task queue: Temporal lists it among the queue's pollers
        (the SDK's default identity is `pid@host`)."""
        import asyncio

        from temporalio.api.enums.v1 import TaskQueueType
        from temporalio.api.taskqueue.v1 import TaskQueue
        from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest
        from temporalio.client import Client

        async def pollers() -> list[str]:
            client = await Client.connect(self.temporal.address)
            response = await client.workflow_service.describe_task_queue(
                DescribeTaskQueueRequest(
                    namespace="default",
                    task_queue=TaskQueue(name="assistants-bench"),
                    task_queue_type=TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW,
                )
            )
            return [p.identity for p in response.pollers]

        def polling() -> bool:
            # In a thread of its own: this may be called from inside a running event loop.
            with ThreadPoolExecutor(1) as pool:
                identities = pool.submit(asyncio.run, pollers()).result()
            return any(i.startswith(f"{proc.pid}@") for i in identities)

        deadline = time.monotonic() + 90
        while not polling():
            if proc.poll() is not None:
                raise RuntimeError(f"worker exited ({proc.returncode}); see {log}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"worker did not poll; see {log}")
            time.sleep(0.2)

    def postgres_pid(self) -> int:
        assert self.postgres.directory is not None
        pidfile = self.postgres.directory / "data" / "postmaster.pid"
        return int(pidfile.read_text().split()[0])

    def roles(self) -> list[Role]:
        """Each API and worker apart, then Temporal, PostgreSQL (its backends are children of
        the postmaster), the model and the clients."""
        assert self.temporal.pid is not None
        return [
            *(Role(f"api-{i}", [proc.pid]) for i, (_, proc) in enumerate(self.apis, 1)),
            *(Role(f"worker-{i}", [proc.pid]) for i, proc in enumerate(self.workers, 1)),
            Role("temporal server", [self.temporal.pid]),
            Role("postgresql", [self.postgres_pid()]),
            self.model.role(),
            clients_role(),
        ]

    def stop(self) -> None:
        for proc in [*(p for _, p in self.apis), *self.workers]:
            _terminate(proc)
        if self.model.proc is not None:
            _terminate(self.model.proc)
        self.temporal.stop()
        self.postgres.stop()


# --- clients and output ------------------------------------------------------------------------


def sdk_client(base_url: str, key: str, *, connections: int = 100) -> openai.AsyncOpenAI:
    """An SDK client whose connection pool holds `connections` open connections: the SDK's
    default keeps only 100 alive, so with more concurrent requests connections are closed and
    reopened all the time (which the server would pay for, and the benchmark would measure)."""
    # openai 3 speaks through httpx2 (its own fork of httpx), so the limits are httpx2's.
    limits = httpx2.Limits(max_connections=connections, max_keepalive_connections=connections)
    return openai.AsyncOpenAI(
        base_url=base_url,
        api_key=key,
        max_retries=0,  # an error must show, not be hidden by a retry
        http_client=openai.DefaultAsyncHttpxClient(limits=limits),
    )


def table(title: str, headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """A plain-text table (what each benchmark prints after its JSON is written)."""
    cells = [[str(h) for h in headers], *([str(c) for c in row] for row in rows)]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = [title, "  ".join(h.ljust(w) for h, w in zip(cells[0], widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in cells[1:]]
    return "\n".join(lines)


def cpu_table(title: str, ms_per_run: dict[str, float]) -> str:
    return table(title, ["process", "CPU ms per run"], ms_per_run.items())


def write_result(name: str, result: dict[str, Any]) -> Path:
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / name
    path.write_text(json.dumps(result, indent=2) + "\n")
    return path
