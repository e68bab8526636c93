"""What one run costs: Temporal history events, workflow tasks, activities and local activities,
and SQL statements and transactions, by process (API, worker), per run.

Temporal's side comes from the runs' histories. The store's side comes from PostgreSQL's own
statement log: the store has no statement counter (and a SQLAlchemy event listener would see
only its own process), so this benchmark runs the production shape on PostgreSQL (a throw-away
cluster, a separate Temporal dev server, one `api` and one `worker` process) with
`log_statement = all`, each process connecting as its own role (`api`, `worker`), and counts
the log's statements per role while sequential runs of one kind execute. Transactions are each
`BEGIN` plus each statement a connection runs outside one (autocommit), followed per backend
through the log. Logging every statement slows the store: this benchmark counts, it does not
time (bench/run_latency.py does; this one reports durations only from the histories).

Kinds of run (each on a fresh thread with one message; `runs.create` is counted, the thread's
creation is not):

- `streamed`: `runs.create(stream=True)` until the stream ends;
- `polled`: `runs.create`, then `runs.retrieve` every 100 ms (the SDK's default) until
  `completed`; the API's statements include the polls (their number per run is reported);
- `client function round`: a client-side function tool, `requires_action` →
  `submit_tool_outputs` → `completed`, polled every 100 ms.

    .venv/bin/python -m bench.breakdown [--runs 20]

Results go to `bench/results/breakdown.json`.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import openai
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from bench.harness import SplitProcesses, sdk_client, table, write_result
from bench.runs import CLIENT_FUNCTION, breakdown, function_round_run, new_thread, streamed_run

ROLES = ("api", "worker")
# '%m [%p] %u ': "2026-12-01 19:32:45.123 UTC [4242] api LOG:  execute __asyncpg_stmt_3__: …".
# Extended-protocol statements (asyncpg's prepared ones) log as `execute`, simple ones as
# `statement`; continuation lines of a multi-line statement start with a tab (not counted).
_LINE = re.compile(r"\[(\d+)\] (\w+) LOG:  (?:statement|execute [^:]*): (\w*)")


async def configure_postgres(procs: SplitProcesses) -> None:
    """One login role per process kind, and every statement logged with its role."""
    engine = create_async_engine(procs.postgres.url, isolation_level="AUTOCOMMIT")
    async with engine.connect() as conn:
        for role in ROLES:
            await conn.execute(text(f"CREATE ROLE {role} LOGIN SUPERUSER"))
        await conn.execute(text("ALTER SYSTEM SET log_line_prefix = '%m [%p] %u '"))
        await conn.execute(text("ALTER SYSTEM SET log_statement = 'all'"))
        await conn.execute(text("SELECT pg_reload_conf()"))
    await engine.dispose()


def count_statements(log: str) -> Counter[tuple[str, str]]:
    """Statements by (role, first word), an empty word being the pool's liveness ping (`;`);
    and transactions, (role, "(transactions)"): each BEGIN, and each statement a backend runs
    outside one (autocommit; pings apart)."""
    found: Counter[tuple[str, str]] = Counter()
    in_transaction: set[str] = set()  # backend pids
    for match in _LINE.finditer(log):
        pid, role, word = match.group(1), match.group(2), match.group(3).upper() or "(ping)"
        found[role, word] += 1
        if word == "BEGIN":
            in_transaction.add(pid)
            found[role, "(transactions)"] += 1
        elif word in ("COMMIT", "ROLLBACK", "END"):
            in_transaction.discard(pid)
        elif pid not in in_transaction and word != "(ping)":
            found[role, "(transactions)"] += 1
    return found


async def polled(client: openai.AsyncOpenAI, assistant: str, polls: list[int]) -> str:
    thread = await new_thread(client)
    run = await client.beta.threads.runs.create(thread_id=thread, assistant_id=assistant)
    count = 0
    while run.status in ("queued", "in_progress"):
        await asyncio.sleep(0.1)
        run = await client.beta.threads.runs.retrieve(run.id, thread_id=thread)
        count += 1
    assert run.status == "completed", (run.status, run.last_error)
    polls.append(count)
    return run.id


async def counted(
    procs: SplitProcesses, runs: int, one: Callable[[], Awaitable[str]]
) -> tuple[list[str], Counter[tuple[str, str]]]:
    """Run `one` `runs` times; returns the run ids and the statements by (role, first word)."""
    offset = procs.postgres_log.stat().st_size
    run_ids = [await one() for _ in range(runs)]
    await asyncio.sleep(1.0)  # writes after `completed` (the workflow's end)
    with procs.postgres_log.open("rb") as log:
        log.seek(offset)
        statements = count_statements(log.read().decode(errors="replace"))
    return run_ids, statements


async def measure_kind(
    procs: SplitProcesses, runs: int, one: Callable[[], Awaitable[str]]
) -> dict[str, Any]:
    run_ids, statements = await counted(procs, runs, one)
    by_role = {r: _statements(statements, r) for r in ROLES}
    return {
        "statements_per_run": {r: round(by_role[r] / runs, 1) for r in ROLES},
        "transactions_per_run": {
            r: round(statements[r, "(transactions)"] / runs, 1) for r in ROLES
        },
        # By first word, as logged: the API's include the thread's creation.
        "statements_per_run_by_word_with_thread_creation": {
            f"{role} {word}": round(n / runs, 1)
            for (role, word), n in sorted(statements.items())
            if role in ROLES and word != "(transactions)"
        },
        "temporal": await breakdown(procs.temporal_address, run_ids),
    }


async def main_async(procs: SplitProcesses, args: argparse.Namespace) -> dict[str, Any]:
    await configure_postgres(procs)
    await asyncio.to_thread(procs.add_api, "api")
    await asyncio.to_thread(procs.add_worker, "worker")
    client = sdk_client(procs.api_urls[0], procs.key)
    plain = (await client.beta.assistants.create(model="gpt-4o")).id
    tooled = (await client.beta.assistants.create(model="gpt-4o", tools=[CLIENT_FUNCTION])).id
    for _ in range(3):  # warm up
        await streamed_run(client, plain)
        await function_round_run(client, tooled)
    polls: list[int] = []

    async def thread_only() -> str:
        await new_thread(client)
        return ""

    async def streamed() -> str:
        return (await streamed_run(client, plain)).run_id

    async def polled_run() -> str:
        return await polled(client, plain, polls)

    async def function_round() -> str:
        return (await function_round_run(client, tooled, poll_ms=100))[1]

    threads = await measure_thread_creation(procs, args.runs, thread_only)
    kinds = {
        "streamed": await measure_kind(procs, args.runs, streamed),
        "polled every 100 ms": await measure_kind(procs, args.runs, polled_run),
        "client function round": await measure_kind(procs, args.runs, function_round),
    }
    kinds["polled every 100 ms"]["polls_per_run"] = round(sum(polls) / len(polls), 1)
    for result in kinds.values():  # count from `runs.create`: the thread creation apart
        result["statements_per_run"]["api"] = round(
            result["statements_per_run"]["api"] - threads["statements"], 1
        )
        result["transactions_per_run"]["api"] = round(
            result["transactions_per_run"]["api"] - threads["transactions"], 1
        )
    await client.close()
    return {"runs_per_kind": args.runs, "thread_creation": threads, "kinds": kinds}


async def measure_thread_creation(
    procs: SplitProcesses, n: int, one: Callable[[], Awaitable[str]]
) -> dict[str, float]:
    _, statements = await counted(procs, n, one)
    return {
        "statements": round(_statements(statements, "api") / n, 1),
        "transactions": round(statements["api", "(transactions)"] / n, 1),
    }


def _statements(counted: Counter[tuple[str, str]], role: str) -> int:
    return sum(n for (r, word), n in counted.items() if r == role and word != "(transactions)")


def report(result: dict[str, Any]) -> str:
    rows = []
    for kind, r in result["kinds"].items():
        t = r["temporal"]
        rows.append(
            (
                kind,
                r["statements_per_run"]["api"],
                r["statements_per_run"]["worker"],
                r["transactions_per_run"]["api"],
                r["transactions_per_run"]["worker"],
                t["history events per run"],
                t["workflow tasks per run"],
                t["activities per run"],
                t["local activities per run"],
            )
        )
    headers = [
        "run",
        "SQL api",
        "SQL worker",
        "xacts api",
        "xacts worker",
        "events",
        "wf tasks",
        "activities",
        "local acts",
    ]
    threads = result["thread_creation"]
    return (
        table(f"per run (means of {result['runs_per_kind']})", headers, rows)
        + f"\n(thread creation, subtracted from the API's: {threads['statements']} statements, "
        f"{threads['transactions']} transactions)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        procs = SplitProcesses(Path(tmp), model_mode="tool-rounds")
        try:
            procs.start(apis=0, workers=0)
            result = asyncio.run(main_async(procs, args))
        finally:
            procs.stop()
    result["wall_s"] = round(time.perf_counter() - started, 1)
    write_result("breakdown.json", result)
    print(report(result))


if __name__ == "__main__":
    main()
