"""Run latency and throughput, against a baseline measured in the same run.

Starts `durable-assistants dev` (embedded Temporal dev server, worker and API, SQLite store) in a
fresh data dir and a scripted model server that answers instantly, each as its own process. Then:

1. baseline: the same streamed chat completion called directly on the model server;
2. latency, sequentially, `runs.create` → `completed` as a client observes it:
   - polled every 5 ms (which shows the server-side latency), and with the SDK's
     `create_and_poll` (it waits `openai-poll-after-ms` between GETs);
   - streamed (`stream=True`): first `thread.message.delta` and the `thread.run.completed`
     event's arrival;
   - with one client-side function tool round (`requires_action` → `submit_tool_outputs`) and
     with one round of a function tool the worker runs (`get_weather`), both polled every 5 ms;
3. what a run costs Temporal and where the time goes, from the histories of sampled runs
   (history events, workflow tasks, activities, local activities per run);
4. throughput with 50 concurrent clients, polled (`create_and_poll`) and streamed: runs/s and
   CPU-ms per run of each process (`dev` = API + worker, Temporal server, model server, clients).

    .venv/bin/python -m bench.run_latency [--runs 100] [--clients 50] [--per-client 10]
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from bench.harness import (
    CpuMeter,
    DevProcesses,
    added,
    cpu_table,
    pct,
    sdk_client,
    summary,
    table,
    write_result,
)
from bench.runs import (
    CLIENT_FUNCTION,
    SERVER_FUNCTION,
    breakdown,
    direct_completion,
    function_round_run,
    polled_run,
    streamed_run,
)


async def throughput(
    dev: DevProcesses,
    clients: int,
    per_client: int,
    one: Callable[[], Awaitable[float]],
) -> dict[str, Any]:
    latencies: list[float] = []
    errors: list[str] = []

    async def worker() -> None:
        for _ in range(per_client):
            try:
                latencies.append(await one())
            except Exception as error:  # counted and shown, the load goes on
                errors.append(repr(error)[:200])

    meter = CpuMeter(dev.roles())
    meter.start()
    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(clients)))
    wall = time.perf_counter() - started
    meter.stop()
    return {
        "clients": clients,
        "runs": len(latencies),
        "errors": len(errors),
        "first_errors": errors[:3],
        "wall_s": round(wall, 1),
        "runs_per_s": round(len(latencies) / wall, 1),
        **(summary(latencies) if latencies else {}),
        "cpu_ms_per_run": meter.ms_per(len(latencies)),
    }


async def measure(dev: DevProcesses, args: argparse.Namespace) -> dict[str, Any]:
    client = sdk_client(dev.api_url, dev.key, connections=max(100, args.clients * 2))
    direct = sdk_client(dev.model_url, "x")
    plain = await client.beta.assistants.create(model="gpt-4o")
    client_tool = await client.beta.assistants.create(model="gpt-4o", tools=[CLIENT_FUNCTION])
    server_tool = await client.beta.assistants.create(model="gpt-4o", tools=[SERVER_FUNCTION])
    for _ in range(5):  # warm up connections, caches and the worker
        await polled_run(client, plain.id, poll_ms=5)
        await streamed_run(client, plain.id)
        await function_round_run(client, client_tool.id)
        await polled_run(client, server_tool.id, poll_ms=5)
        await direct_completion(direct)
    n = args.runs
    base = [await direct_completion(direct) for _ in range(n)]
    base_first, base_total = [b[0] for b in base], [b[1] for b in base]
    tight = [await polled_run(client, plain.id, poll_ms=5) for _ in range(n)]
    sdk = [(await polled_run(client, plain.id, poll_ms=None))[0] for _ in range(n)]
    streamed = [await streamed_run(client, plain.id) for _ in range(n)]
    client_round = [await function_round_run(client, client_tool.id) for _ in range(n)]
    server_round = [await polled_run(client, server_tool.id, poll_ms=5) for _ in range(n)]
    tight_s = [t for t, _ in tight]
    first = [s.first_delta for s in streamed]
    completed = [s.completed for s in streamed]
    sample = min(20, n)
    parts = {
        "run (polled)": await breakdown(dev.temporal_address, [r for _, r in tight[:sample]]),
        "run (streamed)": await breakdown(
            dev.temporal_address, [s.run_id for s in streamed[:sample]]
        ),
        "run with a client function round": await breakdown(
            dev.temporal_address, [r for _, r in client_round[:sample]]
        ),
        "run with a worker function round": await breakdown(
            dev.temporal_address, [r for _, r in server_round[:sample]]
        ),
    }

    async def sdk_run() -> float:
        return (await polled_run(client, plain.id, poll_ms=None))[0]

    async def stream_run() -> float:
        return (await streamed_run(client, plain.id)).completed

    polled_load = await throughput(dev, args.clients, args.per_client, sdk_run)
    streamed_load = await throughput(dev, args.clients, args.per_client, stream_run)
    await client.close()
    await direct.close()
    return {
        "baseline_direct_model_call": summary(base_total),
        "baseline_direct_first_token": summary(base_first),
        "run_polled_every_5ms": summary(tight_s),
        "run_sdk_create_and_poll": summary(sdk),
        "run_streamed_first_delta": summary(first),
        "run_streamed_completed_event": summary(completed),
        "run_with_client_function_round_polled_5ms": summary([t for t, _ in client_round]),
        "run_with_worker_function_round_polled_5ms": summary([t for t, _ in server_round]),
        "added_polled_5ms": added(tight_s, base_total),
        "added_sdk_create_and_poll": added(sdk, base_total),
        "added_streamed_first_token": added(first, base_first),
        "added_streamed_completed": added(completed, base_total),
        "added_by_client_function_round_over_plain_run": added(
            [t for t, _ in client_round], tight_s
        ),
        "added_by_worker_function_round_over_plain_run": added(
            [t for t, _ in server_round], tight_s
        ),
        # Kept for comparisons with earlier results.
        "added_p50_ms_polled_5ms": round((pct(tight_s, 0.5) - pct(base_total, 0.5)) * 1000, 1),
        "added_p50_ms_sdk": round((pct(sdk, 0.5) - pct(base_total, 0.5)) * 1000, 1),
        "where_time_goes_ms": parts,
        "throughput": polled_load,
        "throughput_streamed": streamed_load,
    }


def report(result: dict[str, Any]) -> str:
    rows = [
        (name, result[key]["p50_ms"], result[key]["p95_ms"])
        for name, key in [
            ("baseline: direct chat completion (total)", "baseline_direct_model_call"),
            ("baseline: direct first token", "baseline_direct_first_token"),
            ("run polled every 5 ms", "run_polled_every_5ms"),
            ("run, SDK create_and_poll", "run_sdk_create_and_poll"),
            ("run streamed: first delta", "run_streamed_first_delta"),
            ("run streamed: thread.run.completed", "run_streamed_completed_event"),
            ("run + client function round", "run_with_client_function_round_polled_5ms"),
            ("run + worker function round", "run_with_worker_function_round_polled_5ms"),
            ("ADDED: polled every 5 ms", "added_polled_5ms"),
            ("ADDED: SDK create_and_poll", "added_sdk_create_and_poll"),
            ("ADDED: streamed, time to first token", "added_streamed_first_token"),
            ("ADDED: streamed, until completed", "added_streamed_completed"),
            ("ADDED by a client function round", "added_by_client_function_round_over_plain_run"),
            ("ADDED by a worker function round", "added_by_worker_function_round_over_plain_run"),
        ]
    ]
    out = [table("latency (ms)", ["measurement", "p50", "p95"], rows)]
    counts = [
        (kind, *(parts.get(f"{c} per run", "") for c in COUNTS))
        for kind, parts in result["where_time_goes_ms"].items()
    ]
    out.append(table("per run, from Temporal histories", ["run", *COUNTS], counts))
    for key in ("throughput", "throughput_streamed"):
        load = result[key]
        out.append(
            f"{key}: {load['clients']} clients, {load['runs']} runs, {load['errors']} errors, "
            f"{load['runs_per_s']} runs/s, p50 {load.get('p50_ms')} ms, p95 {load.get('p95_ms')}"
        )
        out.append(cpu_table(f"{key}: CPU per run", load["cpu_ms_per_run"]))
    return "\n\n".join(out)


COUNTS = ("history events", "workflow tasks", "activities", "local activities")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--per-client", type=int, default=10)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        dev = DevProcesses.with_tool_rounds(Path(tmp))
        dev.start()
        try:
            result = asyncio.run(measure(dev, args))
        finally:
            dev.stop()
    write_result("latency.json", result)
    print(report(result))


if __name__ == "__main__":
    main()
