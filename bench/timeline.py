"""Where a streamed run's milliseconds go, as the client sees them: the median arrival time of each
event of `runs.stream`, from just before the request, next to the same chat completion called
directly (first token, and done). The model answers instantly, so everything after the direct
call's time is the server's.

    .venv/bin/python -m bench.timeline [--runs 40]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import openai

from bench.harness import DevProcesses, write_result


async def _direct(url: str, runs: int) -> dict[str, float]:
    client = openai.AsyncOpenAI(base_url=url, api_key="x", max_retries=0)
    first: list[float] = []
    done: list[float] = []
    for _ in range(runs):
        began = time.perf_counter()
        stream = await client.chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": "Hi"}], stream=True
        )
        seen = None
        async for _chunk in stream:
            seen = seen or time.perf_counter()
        first.append(((seen or time.perf_counter()) - began) * 1000)
        done.append((time.perf_counter() - began) * 1000)
    await client.close()
    return {"first token": statistics.median(first), "done": statistics.median(done)}


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        dev = DevProcesses(Path(tmp))
        dev.start()
        try:
            client = openai.AsyncOpenAI(base_url=dev.api_url, api_key=dev.key, max_retries=0)
            assistant = await client.beta.assistants.create(model="gpt-4o", instructions="Hi.")
            arrivals: dict[str, list[float]] = {}
            for index in range(args.runs + 5):
                thread = await client.beta.threads.create(
                    messages=[{"role": "user", "content": "Hi"}]
                )
                began = time.perf_counter()
                seen: dict[str, float] = {}
                async with client.beta.threads.runs.stream(
                    thread_id=thread.id, assistant_id=assistant.id
                ) as stream:
                    async for event in stream:
                        seen.setdefault(event.event, (time.perf_counter() - began) * 1000)
                seen["stream closed"] = (time.perf_counter() - began) * 1000
                if index >= 5:  # warm-up
                    for name, at in seen.items():
                        arrivals.setdefault(name, []).append(at)
            direct = await _direct(dev.model_url, args.runs)
            await client.close()
        finally:
            dev.stop()
    medians = {name: round(statistics.median(at), 1) for name, at in arrivals.items()}
    return {
        "runs": args.runs,
        "direct_ms": {k: round(v, 1) for k, v in direct.items()},
        "event_arrival_ms": dict(sorted(medians.items(), key=lambda kv: kv[1])),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=40)
    result = asyncio.run(main_async(parser.parse_args()))
    write_result("timeline.json", result)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
