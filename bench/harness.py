"""What both benchmarks share: `durable-assistants dev` and the scripted model server as separate
processes, percentiles, and per-process CPU time."""

from __future__ import annotations

import contextlib
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx

from assistants.devserver import free_port

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
_TICKS = os.sysconf("SC_CLK_TCK")


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def summary(values: list[float]) -> dict[str, float]:
    """p50/p95/mean in milliseconds of durations given in seconds."""
    return {
        "p50_ms": round(pct(values, 0.5) * 1000, 1),
        "p95_ms": round(pct(values, 0.95) * 1000, 1),
        "mean_ms": round(statistics.mean(values) * 1000, 1),
    }


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICKS


def children(pid: int) -> list[int]:
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        found += [int(c) for c in (task / "children").read_text().split()]
    return found


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
        self.model_args = [str(ttft_s), str(tokens_per_s), *([model_mode] if model_mode else [])]
        self.extra_env = env or {}
        self.model_port = free_port()
        self.api_port = free_port()
        self.temporal_port = free_port()
        self.key = "sk-bench"
        self.procs: list[subprocess.Popen[bytes]] = []
        self.dev: subprocess.Popen[bytes] | None = None

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}/v1"

    @property
    def model_url(self) -> str:
        return f"http://127.0.0.1:{self.model_port}/v1"

    @property
    def temporal_address(self) -> str:
        return f"127.0.0.1:{self.temporal_port}"

    def start(self) -> None:
        model = subprocess.Popen(
            [
                sys.executable,
                str(ROOT / "bench" / "model_server.py"),
                str(self.model_port),
                *self.model_args,
            ],
            stdout=subprocess.PIPE,
        )
        self.procs.append(model)
        assert model.stdout is not None and model.stdout.readline().strip() == b"ready"
        env = {k: v for k, v in os.environ.items() if not k.startswith("ASSISTANTS_")}
        env |= {
            "ASSISTANTS_DATA_DIR": str(self.workdir / "data"),
            "ASSISTANTS_MODEL_BASE_URL": self.model_url,
            "ASSISTANTS_API_PORT": str(self.api_port),
            "ASSISTANTS_TEMPORAL_ADDRESS": self.temporal_address,
            "ASSISTANTS_TEMPORAL_UI_PORT": str(free_port()),
            "ASSISTANTS_BOOTSTRAP_API_KEY": self.key,
            "ASSISTANTS_LOG_LEVEL": "WARNING",
        }
        env |= self.extra_env
        # Settings to compare (e.g. BENCH_ASSISTANTS_SEARCH_ATTRIBUTES=false) pass through.
        env |= {
            k.removeprefix("BENCH_"): v
            for k, v in os.environ.items()
            if k.startswith("BENCH_ASSISTANTS_")
        }
        with open(self.workdir / "dev.log", "wb") as log:  # the child keeps its own handle
            self.dev = subprocess.Popen(
                [sys.executable, "-m", "assistants.cli", "dev"], env=env, stdout=log, stderr=log
            )
        self.procs.append(self.dev)
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"http://127.0.0.1:{self.api_port}/healthz").is_success:
                    return
            time.sleep(0.2)
        raise TimeoutError(f"dev did not start; see {self.workdir / 'dev.log'}")

    def stop(self) -> None:
        for proc in reversed(self.procs):
            proc.terminate()
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
        RESULTS.mkdir(exist_ok=True)
        log = self.workdir / "dev.log"
        if log.exists():
            (RESULTS / "dev.log").write_bytes(log.read_bytes())
