"""Mixed load: many concurrent SDK clients doing what applications do, while runs are in flight.

Each of `--clients` asyncio clients (the real `openai` AsyncOpenAI SDK, one shared client per API
process with a connection pool as large as the load, so no connection is closed and reopened)
loops over a realistic mix on a thread of its own (a new thread every `--thread-every`
iterations):

    messages.create → messages.list (20) → assistants.retrieve →
    a run: streamed (`--stream-share` of them; `runs.create(stream=True)` until
    `thread.run.completed`) or polled (`runs.create`, then `runs.retrieve` every `--poll-ms`)

The scripted model (its own process) answers with a 200 ms time to first token and 50 tokens/s
by default, so runs stay in flight while the other clients read and write. Operations started in
the measurement window (after `--warmup` seconds, for `--duration` seconds) count: p50/p95 per
operation, requests/s, runs/s (runs completed in the window), errors, and CPU-ms per run of
each process. The target for plain reads and writes is p50 ≤ 100 ms.

    .venv/bin/python -m bench.mixed_load [--clients 200] [--duration 30] [--warmup 5]
        [--stream-share 0.5] [--poll-ms 100] [--ttft 0.2] [--tokens-per-s 50]
        [--stack dev|split] [--apis 1] [--workers 1]

`--stack dev` (default) is `durable-assistants dev` on SQLite; `--stack split` is PostgreSQL,
a separate Temporal dev server and `--apis` API / `--workers` worker processes (clients spread
over the APIs). Results go to `bench/results/mixed_load.json`.
"""

from __future__ import annotations

import argparse
import asyncio
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
    SplitProcesses,
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
        started = time.perf_counter()
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
            self.latencies.setdefault(op, []).append(time.perf_counter() - started)
            self.requests += request

    def run_done(self) -> None:
        if self.counts(time.perf_counter()):
            self.runs += 1


async def streamed(rec: Recorder, client: openai.AsyncOpenAI, thread: str, assistant: str) -> None:
    started = time.perf_counter()
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
    rec: Recorder, client: openai.AsyncOpenAI, thread: str, assistant: str, poll_ms: int
) -> None:
    started = time.perf_counter()
    run = await rec.timed(
        "runs.create", client.beta.threads.runs.create(thread_id=thread, assistant_id=assistant)
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
    while time.perf_counter() < rec.window[1]:
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
                await polled(rec, client, thread, assistant, args.poll_ms)
            rec.run_done()
        except Exception:  # recorded; start over on a fresh thread (a run may still be active)
            thread = ""
            await asyncio.sleep(0.1)


async def measure(procs: DevProcesses | SplitProcesses, args: argparse.Namespace) -> dict[str, Any]:
    per_api = args.clients // len(procs.api_urls) + 10
    clients = [sdk_client(url, procs.key, connections=per_api) for url in procs.api_urls]
    assistant = (await clients[0].beta.assistants.create(model="gpt-4o")).id
    rec = Recorder()
    now = time.perf_counter()
    rec.window = (now + args.warmup, now + args.warmup + args.duration)
    meter = CpuMeter(procs.roles())

    async def sample_cpu() -> None:
        await asyncio.sleep(rec.window[0] - time.perf_counter())
        meter.start()
        await asyncio.sleep(rec.window[1] - time.perf_counter())
        meter.stop()

    rng = random.Random(args.seed)
    await asyncio.gather(
        sample_cpu(),
        *(
            client_loop(
                rec, clients[i % len(clients)], assistant, args, random.Random(rng.random())
            )
            for i in range(args.clients)
        ),
    )
    for client in clients:
        await client.close()
    operations = {op: {"n": len(v), **summary(v)} for op, v in sorted(rec.latencies.items())}
    plain = [t for op in PLAIN for t in rec.latencies.get(op, [])]
    return {
        "clients": args.clients,
        "stack": args.stack,
        "apis": len(procs.api_urls),
        "workers": args.workers if args.stack == "split" else 1,
        "duration_s": args.duration,
        "model": f"ttft {args.ttft * 1000:.0f} ms, {args.tokens_per_s:g} tokens/s",
        "stream_share": args.stream_share,
        "poll_ms": args.poll_ms,
        "operations": operations,
        "plain_reads_and_writes": summary(plain) if plain else None,
        "requests_per_s": round(rec.requests / args.duration, 1),
        "runs_per_s": round(rec.runs / args.duration, 1),
        "runs": rec.runs,
        "errors": rec.errors,
        "first_errors": rec.first_errors,
        "cpu_ms_per_run": meter.ms_per(rec.runs),
    }


def report(result: dict[str, Any]) -> str:
    rows = [(op, s["n"], s["p50_ms"], s["p95_ms"]) for op, s in result["operations"].items()]
    plain = result["plain_reads_and_writes"] or {}
    head = (
        f"{result['clients']} clients for {result['duration_s']} s ({result['stack']}, "
        f"{result['apis']} API): {result['requests_per_s']} requests/s, "
        f"{result['runs_per_s']} runs/s, errors {result['errors'] or 0}; plain reads and writes "
        f"p50 {plain.get('p50_ms')} ms, p95 {plain.get('p95_ms')} ms (target p50 ≤ 100 ms)"
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
    parser.add_argument("--duration", type=float, default=30.0)
    parser.add_argument("--warmup", type=float, default=5.0)
    parser.add_argument("--stream-share", type=float, default=0.5)
    parser.add_argument("--poll-ms", type=int, default=100)
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
            result = asyncio.run(measure(procs, args))
        finally:
            procs.stop()
    write_result("mixed_load.json", result)
    print(report(result))


if __name__ == "__main__":
    main()
