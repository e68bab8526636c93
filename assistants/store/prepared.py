"""Statements built once, for the store's hot paths, and on SQLite compiled once too.

Building a SQLAlchemy construct per call (`update(t).where(…).values(…)`, `select(t).where(…)`
with literal values) and then hashing it for the compiled cache cost about 80 µs a statement
here, five times what executing a prebuilt one with bound parameters costs (measured with a
micro-benchmark on SQLite; py-spy showed construct building and cache keys among the largest
CPU costs of a run). These helpers build each shape once, keyed by table and columns, and bind
the values per call.

Executing even a prebuilt statement through SQLAlchemy's `Connection` still costs about 20 µs
above the driver's own call (an execution context, the compiled cache's lookup, parameter
processing, event dispatch, a `CursorResult`): about a fifth of a loaded `dev` process's GIL time,
with ~77 statements per streamed run (py-spy). `Prepared` keeps the statement and, on SQLite,
also its compiled form: the SQL text, the order of its parameters and the type processors of
parameters and result columns (JSON in and out, booleans), and executes it on the driver's
connection, which our transactions drive with their own `BEGIN IMMEDIATE`/`COMMIT`
(`db._in_thread`). The rows are named tuples with the statement's column names, read like
SQLAlchemy's `Row` (by attribute or position). Driver errors are wrapped as SQLAlchemy wraps
them (`IntegrityError`, …). On PostgreSQL (asyncpg), and for what the shortcut does not cover
(expanding `IN` lists, Python-side defaults that are not constants), a `Prepared` executes
through SQLAlchemy as before.
"""

from __future__ import annotations

import sqlite3
from collections import namedtuple
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import Table, bindparam, exc, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.sql import ClauseElement, Executable
from sqlalchemy.sql.compiler import SQLCompiler

Params = Mapping[str, Any]
# A stored row: SQLAlchemy's `Row`, or the named tuple `Prepared` builds on SQLite; both are
# read by attribute (`row.status`) or position.
StoredRow = Any
_Processor = Callable[[Any], Any] | None


@dataclass(frozen=True)
class _Compiled:
    """A statement compiled for SQLite: what executing it on the driver's connection needs."""

    sql: str
    # Per positional parameter: its name, its bind processor, its value when the caller does
    # not pass one (a literal bound at build time, e.g. `.limit(1)`, or a column's constant
    # default in an INSERT).
    names: tuple[str, ...]
    processors: tuple[_Processor, ...]
    defaults: Mapping[str, Any]
    row: Any  # the named-tuple class of its rows, or None when it returns none
    result_processors: tuple[_Processor, ...] | None  # None: no column needs one


_UNSUPPORTED = object()  # the SQLAlchemy path executes this statement (or key set)


class Prepared:
    """A statement built once (see the module's docstring): `first`, `one`, `all`, `scalar`,
    `scalars` and `run` execute it with bound parameters, on SQLite straight on the driver."""

    __slots__ = ("_compiled", "statement")

    def __init__(self, statement: Executable) -> None:
        self.statement = statement
        # Per parameter key set (INSERTs list only the columns passed; one entry elsewhere).
        self._compiled: dict[tuple[str, ...] | None, Any] = {}

    def all(self, conn: Connection, params: Params | None = None) -> list[Any]:
        fast = self._fast(conn, params or {})
        if fast is None:
            return list(conn.execute(self.statement, params).all())
        driver, compiled, values = fast
        return _rows(compiled, _execute(driver, compiled, values).fetchall())

    def first(self, conn: Connection, params: Params | None = None) -> Any | None:
        fast = self._fast(conn, params or {})
        if fast is None:
            return conn.execute(self.statement, params).first()
        driver, compiled, values = fast
        raw = _execute(driver, compiled, values).fetchone()
        return None if raw is None else _rows(compiled, [raw])[0]

    def one(self, conn: Connection, params: Params | None = None) -> Any:
        fast = self._fast(conn, params or {})
        if fast is None:
            return conn.execute(self.statement, params).one()
        driver, compiled, values = fast
        raw = _execute(driver, compiled, values).fetchmany(2)
        if len(raw) != 1:
            raise (exc.NoResultFound if not raw else exc.MultipleResultsFound)(
                "No row was found when one was required"
                if not raw
                else "Multiple rows were found when exactly one was required"
            )
        return _rows(compiled, raw)[0]

    def scalar(self, conn: Connection, params: Params | None = None) -> Any:
        row = self.first(conn, params)
        return None if row is None else row[0]

    def scalars(self, conn: Connection, params: Params | None = None) -> list[Any]:
        return [row[0] for row in self.all(conn, params)]

    def run(self, conn: Connection, params: Params | Sequence[Params] | None = None) -> None:
        """Execute for its effect: one set of parameters, or a list (one row each, same keys)."""
        if isinstance(params, Sequence):
            many = list(params)
            keys = set(many[0]) if many else set()
            fast = self._fast(conn, many[0]) if many else None
            if fast is None or any(set(p) != keys for p in many[1:]):
                conn.execute(self.statement, many)
                return
            driver, compiled, _ = fast
            batch = [v for v in (_values(compiled, p) for p in many) if v is not None]
            if len(batch) != len(many):
                conn.execute(self.statement, many)
                return
            try:
                driver.executemany(compiled.sql, batch)
            except sqlite3.Error as error:
                raise _wrapped(compiled, batch, error) from error
            return
        fast = self._fast(conn, params or {})
        if fast is None:
            conn.execute(self.statement, params)
            return
        driver, compiled, values = fast
        _execute(driver, compiled, values)

    def _fast(
        self, conn: Connection, params: Params
    ) -> tuple[sqlite3.Connection, _Compiled, tuple[Any, ...]] | None:
        if conn.dialect.name != "sqlite":
            return None
        key = tuple(sorted(params)) if self.statement.is_insert else None
        compiled = self._compiled.get(key)
        if compiled is None:
            compiled = self._compiled[key] = _compile(self.statement, conn, key)
        if compiled is _UNSUPPORTED:
            return None
        values = _values(compiled, params)
        if values is None:  # a required parameter is missing: let SQLAlchemy say so
            return None
        driver = cast(sqlite3.Connection, conn.connection.driver_connection)
        return driver, compiled, values


def _compile(statement: Executable, conn: Connection, keys: tuple[str, ...] | None) -> Any:
    if not isinstance(statement, ClauseElement):  # e.g. a text() statement
        return _UNSUPPORTED
    dialect = conn.dialect
    compiled = statement.compile(
        dialect=dialect, column_keys=list(keys) if keys is not None else None
    )
    if not isinstance(compiled, SQLCompiler) or compiled.positiontup is None:
        return _UNSUPPORTED
    binds = compiled.binds
    if any(b.expanding or b.callable is not None or b.literal_execute for b in binds.values()):
        return _UNSUPPORTED
    names = tuple(compiled.positiontup)
    defaults: dict[str, Any] = {}
    for name in names:
        bind = binds[name]
        if not bind.required:
            defaults[name] = bind.value
    for column in getattr(compiled, "insert_prefetch", ()) or ():
        default = column.default
        if default is None or not default.is_scalar:
            return _UNSUPPORTED
        defaults[column.key] = default.arg
    processors = tuple(
        binds[name].type.dialect_impl(dialect).bind_processor(dialect) for name in names
    )
    row_type: Any = None
    result_processors: tuple[_Processor, ...] | None = None
    columns = getattr(statement, "exported_columns", None)
    returning: tuple[Any, ...] = getattr(statement, "_returning", ())
    if (statement.is_select or returning) and columns is not None:
        try:
            row_type = _row_type(list(columns.keys()))
        except ValueError:  # a name a named tuple cannot take
            return _UNSUPPORTED
        found = tuple(c.type.dialect_impl(dialect).result_processor(dialect, None) for c in columns)
        result_processors = found if any(p is not None for p in found) else None
    return _Compiled(compiled.string, names, processors, defaults, row_type, result_processors)


def _row_type(fields: list[str]) -> Any:
    return namedtuple("Row", fields)


def _values(compiled: _Compiled, params: Params) -> tuple[Any, ...] | None:
    out = []
    for name, processor in zip(compiled.names, compiled.processors, strict=True):
        if name in params:
            value = params[name]
        elif name in compiled.defaults:
            value = compiled.defaults[name]
        else:
            return None
        if processor is not None:
            try:
                value = processor(value)
            except (
                Exception
            ) as error:  # e.g. the JSON serializer refusing NaN: as SQLAlchemy says it
                raise exc.StatementError(
                    f"({type(error).__module__}.{type(error).__name__}) {error}",
                    compiled.sql,
                    params,
                    error,
                ) from error
        out.append(value)
    return tuple(out)


def _execute(
    driver: sqlite3.Connection, compiled: _Compiled, values: tuple[Any, ...]
) -> sqlite3.Cursor:
    try:
        return driver.execute(compiled.sql, values)
    except sqlite3.Error as error:
        raise _wrapped(compiled, values, error) from error


def _wrapped(compiled: _Compiled, values: Any, error: sqlite3.Error) -> exc.StatementError:
    """The exception SQLAlchemy raises for this driver error (`IntegrityError`, …)."""
    return exc.DBAPIError.instance(compiled.sql, values, error, sqlite3.Error)


def _rows(compiled: _Compiled, raw: list[Any]) -> list[Any]:
    make = compiled.row._make
    processors = compiled.result_processors
    if processors is None:
        return [make(r) for r in raw]
    return [
        make([v if p is None else p(v) for v, p in zip(r, processors, strict=True)]) for r in raw
    ]


_BY_ID: dict[str, Prepared] = {}
_BY_SCOPE: dict[tuple[str, tuple[str, ...], bool], Prepared] = {}
_UPDATES: dict[tuple[str, tuple[str, ...]], Prepared] = {}
_INSERTS: dict[str, Prepared] = {}


def select_one(conn: Connection, table: Table, object_id: str) -> Any:
    """The row with primary id `object_id` (it must exist)."""
    query = _BY_ID.get(table.name)
    if query is None:
        query = _BY_ID[table.name] = Prepared(
            select(table).where(table.c.id == bindparam("object_id"))
        )
    return query.one(conn, {"object_id": object_id})


def select_where(
    conn: Connection, table: Table, where: Mapping[str, Any], *, lock: bool = False
) -> Any | None:
    """The first row whose columns equal `where` (`lock`: FOR UPDATE on PostgreSQL)."""
    columns = tuple(sorted(where))
    key = (table.name, columns, lock)
    query = _BY_SCOPE.get(key)
    if query is None:
        built = select(table).where(*(table.c[c] == bindparam(f"w_{c}") for c in columns))
        if lock:
            built = built.with_for_update()
        query = _BY_SCOPE[key] = Prepared(built)
    return query.first(conn, {f"w_{c}": where[c] for c in columns})


def update_by_id(conn: Connection, table: Table, object_id: str, values: Mapping[str, Any]) -> None:
    """`UPDATE table SET values WHERE id = object_id`."""
    columns = tuple(sorted(values))
    key = (table.name, columns)
    statement = _UPDATES.get(key)
    if statement is None:
        statement = _UPDATES[key] = Prepared(
            update(table)
            .where(table.c.id == bindparam("by_id"))
            # Bound parameters may not take a column's own name in a SET clause.
            .values({c: bindparam(f"v_{c}", type_=table.c[c].type) for c in columns})
        )
    statement.run(conn, {"by_id": object_id} | {f"v_{c}": values[c] for c in columns})


def insert_rows(conn: Connection, table: Table, rows: Iterable[Mapping[str, Any]]) -> None:
    """`INSERT` of whole rows: the table's one prebuilt insert, its values bound per call."""
    rows = list(rows)
    if not rows:
        return
    statement = _INSERTS.get(table.name)
    if statement is None:
        statement = _INSERTS[table.name] = Prepared(table.insert())
    statement.run(conn, rows if len(rows) > 1 else rows[0])
