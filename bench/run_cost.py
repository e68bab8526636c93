"""What one run costs when nothing else is running: sequential runs against `dev`, each kind's
median latency as the client sees it and the CPU-ms per run of every process. Sequential runs
are the quiet measurement: under 50 concurrent clients (`bench.run_latency`) the two cores are
saturated and each process's CPU per run moves with the machine's noise; here every run has the
machine to itself, so a change in what a run costs shows at once. Each process's idle work
(pollers, timers) is included, so the figures are higher than under load.

    .venv/bin/python -m bench.run_cost [--runs 60]

Compare two versions back to back with `BENCH_SOURCE=<other checkout>` (see bench/harness.py).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from bench.harness import CpuMeter, DevProcesses, sdk_client, write_result
from bench.runs import SERVER_FUNCTION, polled_run, streamed_run

WARMUP = 10


async def _measure(
    dev: DevProcesses, runs: int, name: str, one: Callable[[], Awaitable[dict[str, float]]]
) -> dict[str, Any]:
    meter = CpuMeter(dev.roles())
    meter.start()
    samples = [await one() for _ in range(runs)]
    meter.stop()
    latency = {
        key: round(statistics.median(s[key] for s in samples) * 1000, 1) for key in samples[0]
    }
    return {"run": name, "latency_ms_p50": latency, "cpu_ms_per_run": meter.ms_per(runs)}


async def measure(dev: DevProcesses, runs: int) -> list[dict[str, Any]]:
    client = sdk_client(dev.api_url, dev.key)
    plain = await client.beta.assistants.create(model="gpt-4o")
    tool = await client.beta.assistants.create(model="gpt-4o", tools=[SERVER_FUNCTION])

    async def streamed() -> dict[str, float]:
        s = await streamed_run(client, plain.id)
        return {"first delta": s.first_delta, "completed": s.completed}

    async def worker_round() -> dict[str, float]:
        return {"completed (polled every 5 ms)": (await polled_run(client, tool.id, poll_ms=5))[0]}

    for _ in range(WARMUP):
        await streamed()
        await worker_round()
    result = [
        await _measure(dev, runs, "streamed, no tools", streamed),
        await _measure(dev, runs, "one worker function round", worker_round),
    ]
    await client.close()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=60)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        dev = DevProcesses.with_tool_rounds(Path(tmp))
        dev.start()
        try:
            result = asyncio.run(measure(dev, args.runs))
        finally:
            dev.stop()
    write_result("run_cost.json", {"runs": args.runs, "kinds": result})
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
