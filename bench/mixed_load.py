"""Mixed load: many concurrent SDK clients doing what applications do, while runs are in flight.

Each of `--clients` asyncio clients (the real `openai` AsyncOpenAI SDK, one shared client per API
process and client process, with a connection pool as large as its share of the load, so no
connection is closed and reopened) loops over a realistic mix on a thread of its own (a new
thread every `--thread-every` iterations):

    messages.create → messages.list (20) → assistants.retrieve →
    a run: streamed (`--stream-share` of them; `runs.create(stream=True)` until
    `thread.run.completed`) or polled (`runs.create`, then `runs.retrieve` every `--poll-ms`;
    with `--poll-helper`, the SDK's `runs.poll`, whose reads the server holds until the run
    settles, timed as one operation and not counted in requests/s)

The clients are spread over `--client-procs` processes (4 by default). In one process, 200 SDK
clients saturate its event loop: a client's request then waits behind the others' response
parsing, and that wait (measured: the loop ran 100 to 190 ms late at p50) was counted as the
server's latency. Each client process reports how late its own loop ran (`client_loop_lag`), so
a result whose clients were the bottleneck shows it.

The scripted model (its own process) answers with a 200 ms time to first token and 50 tokens/s
by default, so runs stay in flight while the other clients read and write. Operations started in
the measurement window (after `--warmup` seconds, for `--duration` seconds) count: p50/p95 per
operation, requests/s, runs/s (runs completed in the window), errors, and CPU-ms per run of
each process. The target for plain reads and writes is p50 ≤ 100 ms.

    .venv/bin/python -m bench.mixed_load [--clients 200] [--client-procs 4] [--duration 30]
        [--warmup 5] [--stream-share 0.5] [--poll-ms 100] [--poll-helper] [--ttft 0.2]
        [--tokens-per-s 50] [--stack dev|split] [--apis 1] [--workers 1]

`--stack dev` (default) is `durable-assistants dev` on SQLite; `--stack split` is PostgreSQL,
a separate Temporal dev server and `--apis` API / `--workers` worker processes (clients spread
over the APIs). Results go to `bench/results/mixed_load.json`.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import random
import tempfile
import time
from collections.abc import Awaitable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import openai

from bench.harness import (
    CpuMeter,
    DevProcesses,
    Role,
    SplitProcesses,
    clients_role,
    cpu_table,
    sdk_client,
    summary,
    table,
    write_result,
)

T = TypeVar("T")
PLAIN = ("threads.create", "messages.create", "messages.list", "assistants.retrieve")
TERMINAL = {"completed", "failed", "cancelled", "expired", "incomplete", "requires_action"}


@dataclass
class Recorder:
    window: tuple[float, float] = (0.0, 0.0)
    latencies: dict[str, list[float]] = field(default_factory=dict)
    requests: int = 0
    runs: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    first_errors: list[str] = field(default_factory=list)

    def counts(self, started: float) -> bool:
        return self.window[0] <= started < self.window[1]

    async def timed(self, op: str, call: Awaitable[T]) -> T:
        started = time.monotonic()
        try:
            result = await call
        except Exception as error:
            if self.counts(started):
                self.errors[op] = self.errors.get(op, 0) + 1
                if len(self.first_errors) < 5:
                    self.first_errors.append(f"{op}: {error!r}"[:300])
            raise
        self.record(op, started)
        return result

    def record(self, op: str, started: float, *, request: bool = True) -> None:
        if self.counts(started):
            self.latencies.setdefault(op, []).append(time.monotonic() - started)
            self.requests += request

    def run_done(self) -> None:
        if self.counts(time.monotonic()):
            self.runs += 1


async def streamed(rec: Recorder, client: openai.AsyncOpenAI, thread: str, assistant: str) -> None:
    started = time.monotonic()
    stream = await rec.timed(
        "runs.create (stream)",
        client.beta.threads.runs.create(thread_id=thread, assistant_id=assistant, stream=True),
    )
    final = ""
    async for event in stream:
        if event.event == "thread.run.created":
            rec.record("runs.create (stream): thread.run.created", started, request=False)
        final = event.event
    if final != "thread.run.completed":
        raise RuntimeError(f"stream ended with {final}")
    rec.record("run streamed: create → completed", started, request=False)


async def polled(
    rec: Recorder,
    client: openai.AsyncOpenAI,
    thread: str,
    assistant: str,
    poll_ms: int,
    *,
    helper: bool = False,
) -> None:
    started = time.monotonic()
    run = await rec.timed(
        "runs.create", client.beta.threads.runs.create(thread_id=thread, assistant_id=assistant)
    )
    if helper and run.status not in TERMINAL:
        # The SDK's own loop (its reads are held until the run settles): timed as a whole.
        run = await rec.timed(
            "runs.poll (SDK helper, until settled)",
            client.beta.threads.runs.poll(run.id, thread_id=thread, poll_interval_ms=poll_ms),
        )
    while run.status not in TERMINAL:
        await asyncio.sleep(poll_ms / 1000)
        run = await rec.timed(
            "runs.retrieve", client.beta.threads.runs.retrieve(run.id, thread_id=thread)
        )
    if run.status != "completed":
        raise RuntimeError(f"run ended {run.status}: {run.last_error}")
    rec.record("run polled: create → completed", started, request=False)


async def client_loop(
    rec: Recorder,
    client: openai.AsyncOpenAI,
    assistant: str,
    args: argparse.Namespace,
    rng: random.Random,
) -> None:
    await asyncio.sleep(rng.uniform(0, min(2.0, args.warmup)))  # ramp up
    thread = ""
    iteration = 0
    while time.monotonic() < rec.window[1]:
        try:
            if not thread or iteration % args.thread_every == 0:
                thread = (await rec.timed("threads.create", client.beta.threads.create())).id
            iteration += 1
            await rec.timed(
                "messages.create",
                client.beta.threads.messages.create(
                    thread, role="user", content=f"Tell me about penguins, part {iteration}."
                ),
            )
            await rec.timed("messages.list", client.beta.threads.messages.list(thread, limit=20))
            await rec.timed("assistants.retrieve", client.beta.assistants.retrieve(assistant))
            if rng.random() < args.stream_share:
                await streamed(rec, client, thread, assistant)
            else:
                await polled(rec, client, thread, assistant, args.poll_ms, helper=args.poll_helper)
            rec.run_done()
        except Exception:  # recorded; start over on a fresh thread (a run may still be active)
            thread = ""
            await asyncio.sleep(0.1)


@dataclass
class Group:
    """What one client process runs: its clients, against which APIs, in which window
    (`time.monotonic()`, which on Linux is one clock for every process)."""

    index: int
    clients: int
    api_urls: list[str]
    key: str
    assistant: str
    args: argparse.Namespace
    seed: float


async def lag_probe(window: tuple[float, float], lags: list[float]) -> None:
    """How late this process's event loop runs a 10 ms sleep, inside the window."""
    await asyncio.sleep(max(0.0, window[0] - time.monotonic()))
    while time.monotonic() < window[1]:
        before = time.monotonic()
        await asyncio.sleep(0.01)
        lags.append(time.monotonic() - before - 0.01)


async def run_group(group: Group, window: tuple[float, float]) -> dict[str, Any]:
    args = group.args
    per_api = group.clients // len(group.api_urls) + 10
    clients = [sdk_client(url, group.key, connections=per_api) for url in group.api_urls]
    rec = Recorder(window=window)
    lags: list[float] = []
    rng = random.Random(group.seed)
    await asyncio.gather(
        lag_probe(window, lags),
        *(
            client_loop(
                rec,
                clients[(group.index + i) % len(clients)],
                group.assistant,
                args,
                random.Random(rng.random()),
            )
            for i in range(group.clients)
        ),
    )
    for client in clients:
        await client.close()
    return {
        "latencies": rec.latencies,
        "requests": rec.requests,
        "runs": rec.runs,
        "errors": rec.errors,
        "first_errors": rec.first_errors,
        "lags": lags,
    }


def client_process(group: Group, ready: Any, go: Any, window: Any, results: Any) -> None:
    """A client process: say it is up (imports done), wait for the window, run, report."""
    ready.put(group.index)
    go.wait()
    results.put(asyncio.run(run_group(group, (window[0], window[1]))))


def measure(procs: DevProcesses | SplitProcesses, args: argparse.Namespace) -> dict[str, Any]:
    async def create_assistant() -> str:
        client = sdk_client(procs.api_urls[0], procs.key)
        try:
            return (await client.beta.assistants.create(model="gpt-4o")).id
        finally:
            await client.close()

    assistant = asyncio.run(create_assistant())
    # Spawned, not forked: a fork would copy this process's threads and event-loop state.
    ctx = multiprocessing.get_context("spawn")
    ready, results, go = ctx.Queue(), ctx.Queue(), ctx.Event()
    window = ctx.Array("d", 2)
    seeds = random.Random(args.seed)
    count = max(1, min(args.client_procs, args.clients))
    groups = [
        Group(
            index=i,
            clients=args.clients // count + (i < args.clients % count),
            api_urls=procs.api_urls,
            key=procs.key,
            assistant=assistant,
            args=args,
            seed=seeds.random(),
        )
        for i in range(count)
    ]
    children = [
        ctx.Process(target=client_process, args=(g, ready, go, window, results)) for g in groups
    ]
    for child in children:
        child.start()
    try:
        for _ in children:
            ready.get(timeout=120)
        now = time.monotonic()
        window[0], window[1] = now + args.warmup, now + args.warmup + args.duration
        servers = [role for role in procs.roles() if role.name != clients_role().name]
        pids = [child.pid for child in children if child.pid is not None]
        meter = CpuMeter([*servers, Role("clients", pids)])
        go.set()
        time.sleep(max(0.0, window[0] - time.monotonic()))
        meter.start()
        time.sleep(max(0.0, window[1] - time.monotonic()))
        meter.stop()
        parts = [results.get(timeout=args.duration + 300) for _ in children]
    finally:
        for child in children:
            child.join(timeout=30)
            if child.is_alive():
                child.kill()
    latencies: dict[str, list[float]] = {}
    errors: dict[str, int] = {}
    for part in parts:
        for op, values in part["latencies"].items():
            latencies.setdefault(op, []).extend(values)
        for op, n in part["errors"].items():
            errors[op] = errors.get(op, 0) + n
    runs = sum(part["runs"] for part in parts)
    lags = [lag for part in parts for lag in part["lags"]]
    operations = {op: {"n": len(v), **summary(v)} for op, v in sorted(latencies.items())}
    plain = [t for op in PLAIN for t in latencies.get(op, [])]
    return {
        "clients": args.clients,
        "client_processes": count,
        "stack": args.stack,
        "apis": len(procs.api_urls),
        "workers": args.workers if args.stack == "split" else 1,
        "duration_s": args.duration,
        "model": f"ttft {args.ttft * 1000:.0f} ms, {args.tokens_per_s:g} tokens/s",
        "stream_share": args.stream_share,
        "poll_ms": args.poll_ms,
        "poll_helper": args.poll_helper,
        "operations": operations,
        "plain_reads_and_writes": summary(plain) if plain else None,
        "requests_per_s": round(sum(p["requests"] for p in parts) / args.duration, 1),
        "runs_per_s": round(runs / args.duration, 1),
        "runs": runs,
        "errors": errors,
        "first_errors": [e for part in parts for e in part["first_errors"]][:5],
        "client_loop_lag": summary(lags) if lags else None,
        "cpu_ms_per_run": meter.ms_per(runs),
    }


def report(result: dict[str, Any]) -> str:
    rows = [(op, s["n"], s["p50_ms"], s["p95_ms"]) for op, s in result["operations"].items()]
    plain = result["plain_reads_and_writes"] or {}
    lag = result["client_loop_lag"] or {}
    head = (
        f"{result['clients']} clients in {result['client_processes']} processes for "
        f"{result['duration_s']} s ({result['stack']}, {result['apis']} API): "
        f"{result['requests_per_s']} requests/s, "
        f"{result['runs_per_s']} runs/s, errors {result['errors'] or 0}; plain reads and writes "
        f"p50 {plain.get('p50_ms')} ms, p95 {plain.get('p95_ms')} ms (target p50 ≤ 100 ms); "
        f"the client processes' event loops ran late by p50 {lag.get('p50_ms')} ms, "
        f"p95 {lag.get('p95_ms')} ms"
    )
    return "\n\n".join(
        [
            head,
            table("operations (ms)", ["operation", "n", "p50", "p95"], rows),
            cpu_table("CPU per run", result["cpu_ms_per_run"]),
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--client-procs", type=int, default=4)
    parser.add_argument("--duration", type=float, default=30.0)
    parser.add_argument("--warmup", type=float, default=5.0)
    parser.add_argument("--stream-share", type=float, default=0.5)
    parser.add_argument("--poll-ms", type=int, default=100)
    parser.add_argument(
        "--poll-helper",
        action="store_true",
        help="polled runs use the SDK's runs.poll (held until the run settles) instead of "
        "runs.retrieve every --poll-ms",
    )
    parser.add_argument("--thread-every", type=int, default=10)
    parser.add_argument("--ttft", type=float, default=0.2)
    parser.add_argument("--tokens-per-s", type=float, default=50.0)
    parser.add_argument("--stack", choices=["dev", "split"], default="dev")
    parser.add_argument("--apis", type=int, default=1)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        procs: DevProcesses | SplitProcesses
        model = {"ttft_s": args.ttft, "tokens_per_s": args.tokens_per_s}
        if args.stack == "dev":
            procs = DevProcesses(Path(tmp), **model)
            procs.start()
        else:
            procs = SplitProcesses(Path(tmp), **model)
            procs.start(apis=args.apis, workers=args.workers)
        try:
            result = measure(procs, args)
        finally:
            procs.stop()
    write_result("mixed_load.json", result)
    print(report(result))


if __name__ == "__main__":
    main()
