"""What one file_search round adds to a run, at 10k chunks, against the same run without it.

    .venv/bin/python -m bench.file_search_run [--chunks 10000] [--runs 60] [--skip-local]

The store is loaded before the server starts, with `bench/search.py`'s corpus (real English
prose: docstrings in 120-220-word windows, embedded with the offline model) and loader, into the
SQLite database `durable-assistants dev` then serves. The scripted model (own process, instant
answers, `tool-rounds` mode) calls the first tool it is offered and, once it has a tool answer,
replies with text. Measured in the same run, sequentially, with a client polling every 5 ms:

- **baseline**: a run of an assistant without tools (one model round);
- **function tool**: a run with one round of a worker-registered function tool (`get_weather`
  from `tests/support/tools.py`): what any tool round costs (a step, two model rounds);
- **local function tool**: the same with the tool registered `local=True` (`local_weather`):
  the call runs as a local activity, inside the workflow task (left out against a server
  version that does not register it);
- **file_search**: a run of an assistant with file_search on the 10k-chunk store: model round
  (the call), the search activity (embed the query, hybrid ranking, record the results), a model
  round that reads the results (and citations are resolved).

`added_p50_ms` is the difference of the p50s (the target is ≤ 100 ms);
`added_over_function_tool_p50_ms` is what the search adds over a tool round that does nothing.
The search activity's own time comes from the runs' Temporal histories. Results go to
`bench/results/file_search_run.json`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
from pathlib import Path
from typing import Any

import openai

from bench.harness import RESULTS, DevProcesses, pct, summary
from bench.runs import breakdown, polled_run
from bench.search import corpus, load


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    texts, vectors = corpus(args.chunks, RESULTS / "cache")
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data"
        data.mkdir()
        loaded = await load(f"sqlite:///{data / 'assistants.db'}", texts, vectors)
        await loaded.store.db.dispose()
        procs = DevProcesses.with_tool_rounds(Path(tmp))
        procs.start()
        try:
            client = openai.AsyncOpenAI(base_url=procs.api_url, api_key=procs.key, max_retries=0)
            plain = await client.beta.assistants.create(model="gpt-4o")
            searching = await client.beta.assistants.create(
                model="gpt-4o",
                tools=[{"type": "file_search"}],
                tool_resources={"file_search": {"vector_store_ids": [loaded.vector_store_id]}},
            )
            weather: Any = [{"type": "function", "function": {"name": "get_weather"}}]
            tooled = await client.beta.assistants.create(model="gpt-4o", tools=weather)
            local_weather: Any = [{"type": "function", "function": {"name": "local_weather"}}]
            local: Any = await client.beta.assistants.create(model="gpt-4o", tools=local_weather)
            if args.skip_local or not await _registered(client, local.id):
                local = None
            for _ in range(5):  # warm up: connections, the store's matrix cache, the model
                for assistant in (plain, tooled, local, searching):
                    if assistant is not None:
                        await polled_run(client, assistant.id, poll_ms=5)
            base: list[float] = []
            function: list[float] = []
            local_function: list[float] = []
            search: list[float] = []
            search_ids: list[str] = []
            local_ids: list[str] = []
            for _ in range(args.runs):  # interleaved, so drift hits all alike
                base.append((await polled_run(client, plain.id, poll_ms=5))[0])
                function.append((await polled_run(client, tooled.id, poll_ms=5))[0])
                if local is not None:
                    elapsed, run_id = await polled_run(client, local.id, poll_ms=5)
                    local_function.append(elapsed)
                    local_ids.append(run_id)
                elapsed, run_id = await polled_run(client, searching.id, poll_ms=5)
                search.append(elapsed)
                search_ids.append(run_id)
            parts = await breakdown(procs.temporal_address, search_ids[:20])
            local_result: dict[str, Any] = {}
            if local_function:
                local_result = {
                    "run_with_one_local_function_tool_round": summary(local_function),
                    "local_function_tool_round_where_time_goes_ms": await breakdown(
                        procs.temporal_address, local_ids[:20]
                    ),
                }
            return {
                "chunks": args.chunks,
                "runs": args.runs,
                "baseline_run_without_tools": summary(base),
                "run_with_one_function_tool_round": summary(function),
                **local_result,
                "run_with_one_file_search_round": summary(search),
                "added_p50_ms": round((pct(search, 0.5) - pct(base, 0.5)) * 1000, 1),
                "added_over_function_tool_p50_ms": round(
                    (pct(search, 0.5) - pct(function, 0.5)) * 1000, 1
                ),
                "added_mean_ms": round((statistics.mean(search) - statistics.mean(base)) * 1000, 1),
                "file_search_run_where_time_goes_ms": parts,
            }
        finally:
            procs.stop()


async def _registered(client: openai.AsyncOpenAI, assistant_id: str) -> bool:
    """Whether the server's worker runs the assistant's tool itself (a version from before
    `local_weather` hands the call to the client: `requires_action`)."""
    thread = await client.beta.threads.create(messages=[{"role": "user", "content": "Hi"}])
    run = await client.beta.threads.runs.create_and_poll(
        thread_id=thread.id, assistant_id=assistant_id, poll_interval_ms=20
    )
    if run.status == "requires_action":
        await client.beta.threads.runs.cancel(run.id, thread_id=thread.id)
        return False
    return True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--chunks", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=60)
    parser.add_argument(
        "--skip-local",
        action="store_true",
        help="leave the local function tool out (the same kinds as a version without it)",
    )
    args = parser.parse_args()
    result = asyncio.run(main_async(args))
    print(json.dumps(result, indent=2))
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "file_search_run.json").write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
