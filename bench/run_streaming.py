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
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.harness import (
    CpuMeter,
    DevProcesses,
    added,
    cpu_table,
    sdk_client,
    summary,
    table,
    write_result,
)
from bench.runs import Streamed, direct_completion, streamed_run


def ms(values: list[float]) -> dict[str, float]:
    stats = summary(values)
    return {"p50_ms": stats["p50_ms"], "p95_ms": stats["p95_ms"]}


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        procs = DevProcesses(Path(tmp), ttft_s=0.2, tokens_per_s=50)
        procs.start()
        try:
            client = sdk_client(procs.api_url, procs.key, connections=args.concurrent + 10)
            direct = sdk_client(procs.model_url, "x")
            assistant = await client.beta.assistants.create(model="gpt-4o")
            for _ in range(3):
                await streamed_run(client, assistant.id)
                await direct_completion(direct)
            base = [await direct_completion(direct) for _ in range(args.runs)]
            ours = [await streamed_run(client, assistant.id) for _ in range(args.runs)]
            base_first, base_total = [b[0] for b in base], [b[1] for b in base]

            meter = CpuMeter(procs.roles())
            meter.start()
            started = time.perf_counter()
            results = await asyncio.gather(
                *(streamed_run(client, assistant.id) for _ in range(args.concurrent)),
                return_exceptions=True,
            )
            wall = time.perf_counter() - started
            meter.stop()
            ok = [r for r in results if isinstance(r, Streamed)]
            errors = [repr(r) for r in results if not isinstance(r, Streamed)]
            await client.close()
            await direct.close()
            return {
                "model": "ttft 200 ms, 50 tokens/s, 16 chunks",
                "direct_ttft": ms(base_first),
                "direct_total": ms(base_total),
                "server_ttft": ms([o.first_delta for o in ours]),
                "server_completed_event": ms([o.completed for o in ours]),
                "server_total": ms([o.done for o in ours]),
                "added_ttft": added([o.first_delta for o in ours], base_first),
                "added_completed": added([o.completed for o in ours], base_total),
                "added_ttft_p50_ms": added([o.first_delta for o in ours], base_first)["p50_ms"],
                "added_total_p50_ms": added([o.done for o in ours], base_total)["p50_ms"],
                "concurrent": {
                    "streams": args.concurrent,
                    "completed": len(ok),
                    "errors": len(errors),
                    "first_errors": errors[:3],
                    "wall_s": round(wall, 2),
                    "ttft": ms([o.first_delta for o in ok]) if ok else None,
                    "total": ms([o.done for o in ok]) if ok else None,
                    "cpu_ms_per_stream": meter.ms_per(len(ok)),
                },
            }
        finally:
            procs.stop()


def report(result: dict[str, Any]) -> str:
    rows = [
        (name, result[key]["p50_ms"], result[key]["p95_ms"])
        for name, key in [
            ("direct: time to first token", "direct_ttft"),
            ("direct: total", "direct_total"),
            ("server: time to first delta", "server_ttft"),
            ("server: thread.run.completed", "server_completed_event"),
            ("server: until done", "server_total"),
            ("ADDED: time to first token", "added_ttft"),
            ("ADDED: until completed", "added_completed"),
        ]
    ]
    load = result["concurrent"]
    return "\n\n".join(
        [
            table("streaming (ms)", ["measurement", "p50", "p95"], rows),
            f"{load['streams']} concurrent streams: {load['completed']} completed, "
            f"{load['errors']} errors, {load['wall_s']} s wall",
            cpu_table("CPU per stream", load["cpu_ms_per_stream"]),
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--concurrent", type=int, default=200)
    args = parser.parse_args()
    result = asyncio.run(main_async(args))
    write_result("streaming.json", result)
    print(report(result))


if __name__ == "__main__":
    main()
