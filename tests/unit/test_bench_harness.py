"""The benchmarks' own arithmetic: percentiles, added time, per-process CPU sampling and the
PostgreSQL statement-log counting of bench/breakdown.py (a wrong count would mislead every
performance decision made from it)."""

from __future__ import annotations

import os
import subprocess
import sys
import time

from bench.breakdown import count_statements
from bench.harness import CpuMeter, Role, added, pct, table, tree_cpu_seconds


def test_percentiles_and_added() -> None:
    values = [i / 1000 for i in range(1, 101)]  # 1..100 ms
    assert pct(values, 0.5) == 0.051
    assert pct(values, 0.95) == 0.095
    assert added([v + 0.010 for v in values], values) == {"p50_ms": 10.0, "p95_ms": 10.0}


def test_cpu_of_a_process_tree_includes_its_children() -> None:
    burn = "import time\nend = time.process_time() + 0.3\nwhile time.process_time() < end: pass"
    child = subprocess.Popen([sys.executable, "-c", burn])
    meter = CpuMeter([Role("tree", [os.getpid()]), Role("self", [os.getpid()], tree=False)])
    meter.start()
    time.sleep(0.1)
    assert tree_cpu_seconds(os.getpid()) > 0  # the live child is counted while it runs
    child.wait(30)  # reaped: its CPU moves into our cutime, which the tree counts
    time.sleep(0.05)
    meter.stop()
    used = meter.seconds()
    assert used["tree"] >= 0.25
    assert used["self"] < used["tree"] - 0.2
    per_run = meter.ms_per(2)
    assert per_run["total"] == round((used["tree"] + used["self"]) * 1000 / 2, 1)


def test_statement_log_counting() -> None:
    log = "\n".join(
        [
            "2026-12-01 19:32:45.123 UTC [11] api LOG:  statement: BEGIN ISOLATION LEVEL READ",
            "2026-12-01 19:32:45.124 UTC [11] api LOG:  execute __asyncpg_stmt_1__: SELECT 1",
            "\tFROM runs",
            "2026-12-01 19:32:45.125 UTC [12] worker LOG:  execute __asyncpg_stmt_2__: UPDATE r",
            "2026-12-01 19:32:45.126 UTC [11] api LOG:  statement: COMMIT",
            "2026-12-01 19:32:45.127 UTC [12] worker LOG:  execute <unnamed>: ;",
            "2026-12-01 19:32:45.128 UTC [12] worker LOG:  execute __asyncpg_stmt_3__: INSERT x",
            "2026-12-01 19:32:45.129 UTC [13] postgres LOG:  duration: 0.1 ms",
        ]
    )
    found = count_statements(log)
    assert found["api", "BEGIN"] == 1 and found["api", "SELECT"] == 1
    assert found["api", "COMMIT"] == 1
    assert found["worker", "(ping)"] == 1
    # One explicit transaction for the API; two autocommit statements for the worker (the ping
    # is not a transaction of the store's).
    assert found["api", "(transactions)"] == 1
    assert found["worker", "(transactions)"] == 2
    assert not any(role == "postgres" for role, _ in found)


def test_table_aligns_columns() -> None:
    out = table("t", ["a", "long header"], [("x", 1), ("longer cell", 22)]).splitlines()
    assert out[0] == "t"
    assert out[1].index("long header") == out[3].index("1") == len("longer cell") + 2
