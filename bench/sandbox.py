"""code_interpreter sandbox: latency, memory per session and sessions per host.

    .venv/bin/python -m bench.sandbox [--cold 8] [--warm 60] [--sessions 16]

The local backend (IPython kernel inside nsjail, assistants/sandbox) against a BASELINE measured
in the same run: the same kernel (same Python, same kernel_boot.py, same client code) started
as a plain subprocess, without nsjail. "Added" numbers are sandboxed minus baseline, i.e. what
the sandbox costs on top of the kernel's own execution time.

- cold: `start_session` until the kernel answers, then the first `print(1)`; and the first
  pandas+matplotlib cell in a fresh session (imports included);
- warm: `print(1)` and a pandas+matplotlib cell (a 1000-row frame, a line plot returned as a
  PNG) repeated in one live session;
- memory: proportional set size (PSS, shared library pages split between sessions) of nsjail
  plus the kernel, idle and after the pandas+matplotlib imports;
- density: `--sessions` sandboxes alive at once, each answering; sessions per host is then
  extrapolated from the host's memory and the measured PSS (CPU is not the limit for idle
  sessions; each busy one may use `sandbox_cpu_cores`).

Results go to `bench/results/sandbox.json`. The baseline runs unsandboxed code the benchmark
itself wrote; the server never does.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from assistants.config import Settings
from assistants.sandbox.base import SandboxLimits
from assistants.sandbox.factory import local_config
from assistants.sandbox.jail import python_layout, sandbox_env
from assistants.sandbox.kernel_client import Connection, KernelClient
from assistants.sandbox.local import LocalSandboxBackend, LocalSandboxSession
from bench.harness import RESULTS, ROOT, summary

SHM = "/dev/shm" if os.path.isdir("/dev/shm") else None
PRINT = "print(1)"
PANDAS_PLOT = (
    "import numpy as np, pandas as pd, matplotlib.pyplot as plt\n"
    "df = pd.DataFrame(np.random.rand(1000, 3), columns=list('abc'))\n"
    "df.cumsum().plot(); plt.show()\n"
    "df.describe().loc['mean']"
)


async def unsandboxed_kernel(python: Path, limits: SandboxLimits) -> LocalSandboxSession:
    """The baseline: the same kernel and client, as a plain subprocess (benchmark only)."""
    layout = python_layout(python)
    # HOME and MPLCONFIGDIR on a tmpfs, as in the sandbox (IPython and matplotlib write there).
    workdir = Path(tempfile.mkdtemp(prefix="sbx-bench-", dir=SHM))
    connection = Connection.new()
    (workdir / "kernel.json").write_text(json.dumps(connection.kernel_file(f"{workdir}/s")))
    boot = {
        "connection_file": str(workdir / "kernel.json"),
        "font_cache": str(layout.font_cache) if layout.font_cache else None,
        "max_text": limits.max_output_bytes,
        "max_images": limits.max_images,
        "max_image_bytes": limits.max_image_bytes,
    }
    env = sandbox_env(layout) | {"HOME": str(workdir), "MPLCONFIGDIR": str(workdir / "mpl")}
    life_r, life_w = os.pipe()
    proc = await asyncio.create_subprocess_exec(
        str(layout.executable),
        str(ROOT / "assistants" / "sandbox" / "kernel_boot.py"),
        json.dumps(boot),
        stdin=life_r,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env=env,
        cwd=workdir,
    )
    os.close(life_r)
    client = KernelClient(connection, f"{workdir}/s")
    session = LocalSandboxSession(
        "baseline", proc, client, limits, lifeline=life_w, host_dir=workdir
    )
    await session.wait_ready(open_data_dir=False)
    return session


async def timed(session: LocalSandboxSession, code: str) -> float:
    started = time.perf_counter()
    result = await session.execute(code, timeout_s=120)
    elapsed = time.perf_counter() - started
    assert result.status == "ok", result.logs
    return elapsed


def pss_kb(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def host_memory_mb() -> float:
    return int(Path("/proc/meminfo").read_text().split()[1]) / 1024


def session_pss_mb(session: LocalSandboxSession) -> float:
    pids = [session.process_pid] + ([session.kernel_pid] if session.kernel_pid else [])
    return sum(pss_kb(pid) for pid in pids) / 1024


async def cold(start: Any, rounds: int, code: str) -> tuple[list[float], list[float], list[float]]:
    """(start only, start + first `code`, first `code` alone) per round."""
    starts, totals, firsts = [], [], []
    for _ in range(rounds):
        began = time.perf_counter()
        session = await start()
        started = time.perf_counter()
        first = await timed(session, code)
        starts.append(started - began)
        totals.append(started - began + first)
        firsts.append(first)
        await session.close()
    return starts, totals, firsts


async def warm(session: LocalSandboxSession, code: str, rounds: int) -> list[float]:
    await timed(session, code)
    return [await timed(session, code) for _ in range(rounds)]


def added(sandboxed: list[float], baseline: list[float]) -> dict[str, float]:
    a, b = summary(sandboxed), summary(baseline)
    return {
        "p50_ms": round(a["p50_ms"] - b["p50_ms"], 1),
        "mean_ms": round(a["mean_ms"] - b["mean_ms"], 1),
    }


async def main(args: argparse.Namespace) -> dict[str, Any]:
    config = local_config(Settings())
    limits = config.limits
    backend = LocalSandboxBackend(config)
    await backend.check()

    async def sandboxed() -> LocalSandboxSession:
        return await backend.start_session("bench")

    async def baseline() -> LocalSandboxSession:
        return await unsandboxed_kernel(config.python, limits)

    out: dict[str, Any] = {"cgroups": backend.cgroups_enabled, "as_root": os.geteuid() == 0}
    # Interleave sandboxed and baseline so machine load hits both alike.
    for name, code in (("print", PRINT), ("pandas_plot", PANDAS_PLOT)):
        s_start, s_total, s_first = await cold(sandboxed, args.cold, code)
        b_start, b_total, b_first = await cold(baseline, args.cold, code)
        out[f"cold_{name}"] = {
            "sandboxed_start": summary(s_start),
            "sandboxed_start_plus_first_call": summary(s_total),
            "sandboxed_first_call": summary(s_first),
            "baseline_start": summary(b_start),
            "baseline_start_plus_first_call": summary(b_total),
            "baseline_first_call": summary(b_first),
            "added": added(s_total, b_total),
        }
        print(name, "cold", json.dumps(out[f"cold_{name}"]), flush=True)

    box, plain = await sandboxed(), await baseline()
    try:
        idle_pss = session_pss_mb(box)
        for name, code in (("print", PRINT), ("pandas_plot", PANDAS_PLOT)):
            s, b = [], []
            for _ in range(args.warm // 10):  # alternate in blocks of 10
                s += await warm(box, code, 10)
                b += await warm(plain, code, 10)
            out[f"warm_{name}"] = {
                "sandboxed": summary(s),
                "baseline": summary(b),
                "added": added(s, b),
            }
            print(name, "warm", json.dumps(out[f"warm_{name}"]), flush=True)
        loaded_pss = session_pss_mb(box)
    finally:
        await box.close()
        await plain.close()

    sessions: list[LocalSandboxSession] = []
    began = time.perf_counter()
    try:
        for _ in range(args.sessions):
            sessions.append(await sandboxed())
        start_all = time.perf_counter() - began
        answers = await asyncio.gather(*(s.execute("1 + 1", timeout_s=60) for s in sessions))
        assert all(r.logs == "2" for r in answers)
        many_idle = sum(session_pss_mb(s) for s in sessions) / len(sessions)
    finally:
        await asyncio.gather(*(s.close() for s in sessions))
        await backend.aclose()

    mem_total_mb = host_memory_mb()
    usable = mem_total_mb * 0.8
    out["memory"] = {
        "idle_session_pss_mb": round(idle_pss, 1),
        "pandas_loaded_session_pss_mb": round(loaded_pss, 1),
        "idle_pss_mb_with_many_alive": round(many_idle, 1),
        "memory_limit_mb": limits.memory_mb,
    }
    out["density"] = {
        "sessions_alive_at_once": len(sessions),
        "seconds_to_start_them_one_by_one": round(start_all, 2),
        "host_memory_mb": round(mem_total_mb),
        "sessions_per_host_idle": int(usable // many_idle),
        "sessions_per_host_pandas_loaded": int(usable // loaded_pss),
        "sessions_per_host_at_memory_limit": int(usable // limits.memory_mb),
    }
    print("memory", json.dumps(out["memory"]), "density", json.dumps(out["density"]), flush=True)
    return out


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cold", type=int, default=8)
    parser.add_argument("--warm", type=int, default=60)
    parser.add_argument("--sessions", type=int, default=16)
    result = asyncio.run(main(parser.parse_args()))
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "sandbox.json").write_text(json.dumps(result, indent=2) + "\n")
    print(f"written {RESULTS / 'sandbox.json'}")
