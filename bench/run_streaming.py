"""Streaming: time to first token and total time through the server vs the model called directly,
in the same run, and 200 concurrent streams.

Starts `durable-assistants dev` (SQLite) and a scripted model server with 200 ms time to first token
and 50 tokens/s, each as its own process, then measures:

1. baseline: the streamed chat completion called directly (first content chunk, last chunk);
2. `runs.create(stream=True)` through the server (first `thread.message.delta`, `done`);
3. 200 concurrent streamed runs: errors, latency, and CPU seconds per stream used by the server
   process (API + worker) and by the Temporal dev server.

    .venv/bin/python -m bench.run_streaming [--runs 50] [--concurrent 200]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import openai

from bench.harness import RESULTS, DevProcesses, children, cpu_seconds, pct, summary


def ms(values: list[float]) -> dict[str, float]:
    stats = summary(values)
    return {"p50_ms": stats["p50_ms"], "p95_ms": stats["p95_ms"]}


async def direct(model_url: str) -> tuple[float, float]:
    client = openai.AsyncOpenAI(base_url=model_url, api_key="x", max_retries=0)
    started = time.perf_counter()
    first = 0.0
    stream = await client.chat.completions.create(
        model="gpt-4o", messages=[{"role": "user", "content": "Penguins?"}], stream=True
    )
    async for chunk in stream:
        if not first and chunk.choices and chunk.choices[0].delta.content:
            first = time.perf_counter() - started
    total = time.perf_counter() - started
    await client.close()
    return first, total


async def through_server(client: openai.AsyncOpenAI, assistant_id: str) -> tuple[float, float]:
    thread = await client.beta.threads.create(messages=[{"role": "user", "content": "Penguins?"}])
    started = time.perf_counter()
    first = 0.0
    stream = await client.beta.threads.runs.create(
        thread_id=thread.id, assistant_id=assistant_id, stream=True
    )
    final = ""
    async for event in stream:
        if event.event == "thread.message.delta" and not first:
            first = time.perf_counter() - started
        final = event.event
    assert final == "thread.run.completed", final
    return first, time.perf_counter() - started


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        procs = DevProcesses(Path(tmp), ttft_s=0.2, tokens_per_s=50)
        procs.start()
        try:
            client = openai.AsyncOpenAI(base_url=procs.api_url, api_key=procs.key, max_retries=0)
            assistant = await client.beta.assistants.create(model="gpt-4o")
            for _ in range(3):
                await through_server(client, assistant.id)
            base = [await direct(procs.model_url) for _ in range(args.runs)]
            ours = [await through_server(client, assistant.id) for _ in range(args.runs)]

            assert procs.dev is not None
            temporal = children(procs.dev.pid)
            cpu_before = cpu_seconds(procs.dev.pid), sum(cpu_seconds(p) for p in temporal)
            started = time.perf_counter()
            results = await asyncio.gather(
                *(through_server(client, assistant.id) for _ in range(args.concurrent)),
                return_exceptions=True,
            )
            wall = time.perf_counter() - started
            cpu_after = cpu_seconds(procs.dev.pid), sum(cpu_seconds(p) for p in temporal)
            ok = [r for r in results if isinstance(r, tuple)]
            errors = [repr(r) for r in results if not isinstance(r, tuple)]
            return {
                "model": "ttft 200 ms, 50 tokens/s, 16 chunks",
                "direct_ttft": ms([b[0] for b in base]),
                "direct_total": ms([b[1] for b in base]),
                "server_ttft": ms([o[0] for o in ours]),
                "server_total": ms([o[1] for o in ours]),
                "added_ttft_p50_ms": round(
                    (pct([o[0] for o in ours], 0.5) - pct([b[0] for b in base], 0.5)) * 1000, 1
                ),
                "added_total_p50_ms": round(
                    (pct([o[1] for o in ours], 0.5) - pct([b[1] for b in base], 0.5)) * 1000, 1
                ),
                "concurrent": {
                    "streams": args.concurrent,
                    "completed": len(ok),
                    "errors": len(errors),
                    "first_errors": errors[:3],
                    "wall_s": round(wall, 2),
                    "ttft": ms([o[0] for o in ok]) if ok else None,
                    "total": ms([o[1] for o in ok]) if ok else None,
                    "server_cpu_ms_per_stream": round(
                        (cpu_after[0] - cpu_before[0]) / args.concurrent * 1000, 1
                    ),
                    "temporal_cpu_ms_per_stream": round(
                        (cpu_after[1] - cpu_before[1]) / args.concurrent * 1000, 1
                    ),
                },
            }
        finally:
            procs.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--concurrent", type=int, default=200)
    args = parser.parse_args()
    result = asyncio.run(main_async(args))
    print(json.dumps(result, indent=2))
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "streaming.json").write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
