"""Added run latency of a code_interpreter round, against the same run with a function tool.

Starts `durable-assistants dev` (embedded Temporal, worker, sandbox host and API; SQLite) and the
scripted model server in tool-round mode: the first model call of a run calls the assistant's
first tool, the second answers. Then, sequentially, runs on one thread per case:

- `function`: a registered (server-run) function tool, `get_weather` — the same run shape
  (two model rounds and one tool activity), without a sandbox;
- `code_interpreter`: `python` with `print(1)` in the thread's warm session (the first run,
  which starts the kernel, is reported apart as the cold start).

Latency is `runs.create` → `completed` seen by a client polling every 5 ms.

    .venv/bin/python -m bench.code_interpreter [--runs 30]
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

from bench.harness import RESULTS, DevProcesses, summary
from bench.runs import breakdown


async def one_run(
    client: openai.AsyncOpenAI, assistant_id: str, thread_id: str
) -> tuple[float, str]:
    started = time.perf_counter()
    run = await client.beta.threads.runs.create(thread_id=thread_id, assistant_id=assistant_id)
    while run.status in ("queued", "in_progress"):
        await asyncio.sleep(0.005)
        run = await client.beta.threads.runs.retrieve(run.id, thread_id=thread_id)
    elapsed = time.perf_counter() - started
    assert run.status == "completed", run.last_error
    return elapsed, run.id


async def case(client: openai.AsyncOpenAI, tools: list[Any], runs: int) -> list[tuple[float, str]]:
    assistant = await client.beta.assistants.create(model="gpt-4o", tools=tools)
    thread = await client.beta.threads.create(
        messages=[{"role": "user", "content": "Weather in Paris?"}]
    )
    return [await one_run(client, assistant.id, thread.id) for _ in range(runs)]


async def measure(dev: DevProcesses, runs: int) -> dict[str, Any]:
    client = openai.AsyncOpenAI(base_url=dev.api_url, api_key=dev.key, max_retries=0)
    function = [{"type": "function", "function": {"name": "get_weather"}}]
    await case(client, function, 3)  # warm-up
    function_runs = await case(client, function, runs)
    code_runs = await case(client, [{"type": "code_interpreter"}], runs + 1)
    await client.close()
    cold, warm = code_runs[0][0], [t for t, _ in code_runs[1:]]
    function_summary, warm_summary = summary([t for t, _ in function_runs]), summary(warm)
    return {
        "runs": runs,
        "function_tool_run": function_summary,
        "code_interpreter_run_warm": warm_summary,
        "code_interpreter_run_cold_ms": round(cold * 1000, 1),
        "added_by_code_interpreter_p50_ms": round(
            warm_summary["p50_ms"] - function_summary["p50_ms"], 1
        ),
        # Where the time goes (means over the last 10 runs of each, from their histories).
        "function_tool_breakdown_ms": await breakdown(
            dev.temporal_address, [r for _, r in function_runs[-10:]]
        ),
        "code_interpreter_breakdown_ms": await breakdown(
            dev.temporal_address, [r for _, r in code_runs[-10:]]
        ),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=30)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        dev = DevProcesses.with_tool_rounds(Path(tmp))
        dev.start()
        try:
            result = asyncio.run(measure(dev, args.runs))
        finally:
            dev.stop()
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "code_interpreter.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
