"""`Prepared` on SQLite executes on the driver's connection: what it stores and reads back must
be exactly what SQLAlchemy's own execution stores and reads (JSON in and out, `None` in a JSON
column, booleans, constant defaults, bound literals), and driver errors must surface as
SQLAlchemy's exceptions."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import bindparam, exc, select
from sqlalchemy.engine import Connection

from assistants.store.db import Database
from assistants.store.migrations import migrate
from assistants.store.prepared import Prepared, insert_rows, select_one, update_by_id
from assistants.store.tables import runs, vector_stores

RUN: dict[str, Any] = {
    "project_id": "proj_1",
    "thread_id": "thread_1",
    "assistant_id": "asst_1",
    "created_at": 1_700_000_000,
    "status": "queued",
    "model": "gpt-4o",
    "instructions": "Be brief. ✓",
    "tools": [{"type": "function", "function": {"name": "f", "parameters": {"a": [1, 2.5]}}}],
    "metadata": {"k": "välue"},
    "temperature": 0.5,
    "truncation_strategy": {"type": "auto", "last_messages": None},
    "response_format": None,  # a JSON column given None: stored as JSON null, as SQLAlchemy does
    "parallel_tool_calls": True,
}


@pytest.fixture
async def db(tmp_path: Path) -> Any:
    database = Database(f"sqlite:///{tmp_path / 'prepared.db'}")
    await migrate(database)
    yield database
    await database.dispose()


def _raw(conn: Connection, table: str, object_id: str) -> tuple[Any, ...]:
    """The stored row as the driver reads it, columns after the surrogate key."""
    row = conn.exec_driver_sql(f"SELECT * FROM {table} WHERE id = ?", (object_id,)).one()
    return tuple(row)[1:]


async def test_rows_written_and_read_match_sqlalchemys(db: Database) -> None:
    def tx(conn: Connection) -> None:
        insert_rows(conn, runs, [RUN | {"id": "run_fast"}])  # the driver's path
        conn.execute(runs.insert(), RUN | {"id": "run_sqla"})  # SQLAlchemy's own
        update_by_id(conn, runs, "run_fast", {"usage": None, "required_action": {"x": [True]}})
        conn.execute(
            runs.update()
            .where(runs.c.id == "run_sqla")
            .values(usage=None, required_action={"x": [True]})
        )

    await db.write(tx)

    def check(conn: Connection) -> None:
        assert _raw(conn, "runs", "run_fast")[1:] == _raw(conn, "runs", "run_sqla")[1:]
        fast = select_one(conn, runs, "run_fast")
        reference = conn.execute(select(runs).where(runs.c.id == "run_fast")).one()
        assert fast._fields == tuple(reference._fields)
        assert tuple(fast) == tuple(reference)
        assert fast.tools == RUN["tools"] and fast.metadata == {"k": "välue"}
        assert fast.parallel_tool_calls is True and fast.event_seq == 0  # the column's default
        assert fast.response_format is None and fast.required_action == {"x": [True]}

    await db.read(check)
    await db.lookup(check)


async def test_constant_defaults_and_booleans(db: Database) -> None:
    row = {
        "id": "vs_1",
        "project_id": "proj_1",
        "created_at": 1,
        "metadata": {},
        "embedding_model": "m",
        "embedding_dims": 8,
    }

    def tx(conn: Connection) -> None:
        insert_rows(conn, vector_stores, [row])
        insert_rows(conn, vector_stores, [row | {"id": "vs_2", "expired": True}])
        conn.execute(vector_stores.insert(), row | {"id": "vs_3"})

    await db.write(tx)

    def check(conn: Connection) -> None:
        assert _raw(conn, "vector_stores", "vs_1")[1:] == _raw(conn, "vector_stores", "vs_3")[1:]
        first, second = (
            select_one(conn, vector_stores, "vs_1"),
            select_one(conn, vector_stores, "vs_2"),
        )
        assert (first.expired, first.expiry_scheduled) == (False, True)
        assert second.expired is True

    await db.read(check)


async def test_bound_literals_returning_and_result_shapes(db: Database) -> None:
    await db.write(
        lambda conn: insert_rows(conn, runs, [RUN | {"id": f"run_{i}"} for i in range(3)])
    )
    newest = Prepared(select(runs.c.id).order_by(runs.c.seq.desc()).limit(1))
    by_status = Prepared(select(runs.c.id, runs.c.status).where(runs.c.status == bindparam("s")))
    bump = Prepared(
        runs.update()
        .where(runs.c.id == bindparam("rid"))
        .values(event_seq=runs.c.event_seq + bindparam("n"))
        .returning(runs.c.event_seq)
    )

    def check(conn: Connection) -> None:
        assert newest.scalar(conn) == "run_2"
        assert [r.id for r in by_status.all(conn, {"s": "queued"})] == ["run_0", "run_1", "run_2"]
        assert by_status.scalars(conn, {"s": "queued"}) == ["run_0", "run_1", "run_2"]
        assert by_status.first(conn, {"s": "nope"}) is None
        with pytest.raises(exc.MultipleResultsFound):
            by_status.one(conn, {"s": "queued"})
        with pytest.raises(exc.NoResultFound):
            select_one(conn, runs, "run_missing")
        assert bump.scalar(conn, {"rid": "run_1", "n": 3}) == 3
        assert bump.scalar(conn, {"rid": "run_1", "n": 2}) == 5

    await db.write(check)


async def test_expanding_lists_and_missing_parameters_go_through_sqlalchemy(db: Database) -> None:
    await db.write(
        lambda conn: insert_rows(conn, runs, [RUN | {"id": f"run_{i}"} for i in range(3)])
    )
    among = Prepared(select(runs.c.id).where(runs.c.id.in_(bindparam("ids", expanding=True))))

    def check(conn: Connection) -> None:
        assert sorted(among.scalars(conn, {"ids": ["run_0", "run_2", "run_9"]})) == [
            "run_0",
            "run_2",
        ]
        with pytest.raises(exc.StatementError):  # SQLAlchemy names the missing parameter
            among.all(conn, {})

    await db.read(check)


async def test_driver_errors_are_sqlalchemys_exceptions(db: Database) -> None:
    await db.write(lambda conn: insert_rows(conn, runs, [RUN | {"id": "run_1"}]))
    with pytest.raises(exc.IntegrityError):
        await db.write(lambda conn: insert_rows(conn, runs, [RUN | {"id": "run_1"}]))
    with pytest.raises(exc.IntegrityError):  # several rows: executemany
        await db.write(
            lambda conn: insert_rows(conn, runs, [RUN | {"id": "run_2"}, RUN | {"id": "run_1"}])
        )
    # Nothing of the failed transactions stayed, and the connection still works.
    ids = await db.read(lambda conn: Prepared(select(runs.c.id)).scalars(conn))
    assert ids == ["run_1"]
    with pytest.raises(exc.StatementError):  # not JSON: the column's serializer refuses
        await db.write(
            lambda conn: update_by_id(conn, runs, "run_1", {"metadata": {"x": float("nan")}})
        )
    assert (await db.read(lambda conn: select_one(conn, runs, "run_1"))).metadata == {"k": "välue"}
