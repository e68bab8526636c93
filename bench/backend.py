"""CPU per streamed model call: the model backend (plain httpx2 + its own SSE decoder) vs the
`openai` SDK's streaming (what the backend used before), in this process.

Starts bench/model_server.py as its own process (its CPU is not counted), then makes `--calls`
sequential streamed chat completions of its default 16-chunk answer with each client and reports
`time.process_time()` per call: the CPU the worker spends per model call on the HTTP side.
`--tokens-per-s` paces the chunks so that each arrives in its own read, as from a real model.

    .venv/bin/python -m bench.backend [--calls 500] [--rounds 3] [--tokens-per-s 0]
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Awaitable, Callable

import openai
from openai.types.chat import ChatCompletionMessageParam

from assistants.backends.base import ChatRequest
from assistants.backends.openai_compatible import OpenAICompatibleBackend
from bench.harness import ModelServer, table, write_result

MESSAGES: list[ChatCompletionMessageParam] = [{"role": "user", "content": "Penguins?"}]
REQUEST = ChatRequest(model="scripted-model", messages=[{"role": "user", "content": "Penguins?"}])


async def backend_calls(base_url: str, calls: int) -> int:
    backend = OpenAICompatibleBackend(base_url, "k")
    chunks = 0
    try:
        for _ in range(calls):
            async for _chunk in backend.stream(REQUEST):
                chunks += 1
    finally:
        await backend.close()
    return chunks


async def sdk_calls(base_url: str, calls: int) -> int:
    """The SDK's streaming as the backend used it: one client, `max_retries=0`, every chunk's
    content, tool calls, finish reason and usage read from its pydantic model."""
    client = openai.AsyncOpenAI(base_url=base_url, api_key="k", max_retries=0, timeout=120.0)
    chunks = 0
    try:
        for _ in range(calls):
            stream = await client.chat.completions.create(
                model=REQUEST.model,
                messages=MESSAGES,
                stream=True,
                stream_options={"include_usage": True},
            )
            async with stream:
                async for chunk in stream:
                    useful = chunk.usage is not None
                    if chunk.choices:
                        choice = chunk.choices[0]
                        delta = choice.delta
                        useful |= bool(delta.content or delta.tool_calls or choice.finish_reason)
                    chunks += useful
    finally:
        await client.close()
    return chunks


async def measure(
    run: Callable[[str, int], Awaitable[int]], base_url: str, calls: int
) -> dict[str, float]:
    await run(base_url, 20)  # warm up: imports, the connection, caches
    cpu, wall = time.process_time(), time.perf_counter()
    chunks = await run(base_url, calls)
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    return {
        "cpu_us_per_call": cpu / calls * 1e6,
        "wall_us_per_call": wall / calls * 1e6,
        "chunks_per_call": chunks / calls,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--tokens-per-s", type=float, default=0.0, help="pace the chunks (0: as fast as it can)"
    )
    args = parser.parse_args()
    server = ModelServer(tokens_per_s=args.tokens_per_s)
    proc = server.start()
    clients: dict[str, Callable[[str, int], Awaitable[int]]] = {
        "openai SDK": sdk_calls,
        "backend (httpx2 + SSE decoder)": backend_calls,
    }
    best: dict[str, dict[str, float]] = {}
    try:
        for _ in range(args.rounds):  # interleaved, best of rounds: the machine is shared
            for name, run in clients.items():
                result = asyncio.run(measure(run, server.url, args.calls))
                if name not in best or result["cpu_us_per_call"] < best[name]["cpu_us_per_call"]:
                    best[name] = result
    finally:
        proc.terminate()
        proc.wait(20)
    settings = {"calls": args.calls, "rounds": args.rounds, "tokens_per_s": args.tokens_per_s}
    write_result("backend.json", settings | {"clients": best})
    rows = [
        (name, f"{r['cpu_us_per_call']:.0f}", f"{r['wall_us_per_call']:.0f}", r["chunks_per_call"])
        for name, r in best.items()
    ]
    headers = ["client", "CPU µs/call", "wall µs/call", "chunks/call"]
    print(table(f"{args.calls} sequential streamed calls, best of {args.rounds}", headers, rows))


if __name__ == "__main__":
    main()
