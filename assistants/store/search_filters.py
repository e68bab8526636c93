"""Attribute filters of vector-store search: strict validation, and translation into SQL.

Why it exists: `filters` (OpenAI's ComparisonFilter / CompoundFilter, recursive) select *files* by
the `attributes` of their `vector_store_files` row, and they must apply before the top-K cut, so
they become a SQL condition on that row, evaluated in the same query that ranks the chunks. The
attributes are a JSON column, read with each dialect's own JSON functions: SQLite's `json_each`
(exact for any key, and it tells `true` from `1`), PostgreSQL's `->`, `->>` and `json_typeof`.

Semantics (OpenAI documents none beyond the operator names):
- a comparison matches only a value of the same JSON type: `1` never equals `true` or `"1"`;
  numbers compare as numbers, strings by code point (binary / `COLLATE "C"`);
- `ne` and `nin` are the negations of `eq` and `in`, so a file without the key matches them;
- `gt`/`gte`/`lt`/`lte` take a number or a string; `in`/`nin` a non-empty array of them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Float, and_, case, cast, exists, false, func, literal, not_, or_, true
from sqlalchemy.sql.elements import ColumnElement

from assistants.errors import InvalidRequest

COMPARISONS = ("eq", "ne", "gt", "gte", "lt", "lte", "in", "nin")
COMPOUNDS = ("and", "or")
MAX_DEPTH = 8
MAX_NODES = 64
MAX_IN_VALUES = 100
MAX_KEY_LENGTH = 64

Scalar = str | float | int | bool


@dataclass(frozen=True)
class Comparison:
    type: str
    key: str
    value: Scalar | tuple[str | float | int, ...]


@dataclass(frozen=True)
class Compound:
    type: str
    filters: tuple[Comparison | Compound, ...]


Filter = Comparison | Compound


# --- validation ------------------------------------------------------------------------------


def _invalid(param: str, message: str, code: str = "invalid_value") -> InvalidRequest:
    return InvalidRequest(f"Invalid '{param}': {message}", param=param, code=code)


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def parse_filter(value: Any, param: str = "filters") -> Filter:
    """Validate a request's `filters` (raises a 400 naming the offending parameter)."""
    counter = [0]
    return _parse(value, param, 1, counter)


def _parse(value: Any, param: str, depth: int, counter: list[int]) -> Filter:
    counter[0] += 1
    if counter[0] > MAX_NODES:
        raise _invalid(param, f"too many filters. Expected at most {MAX_NODES} in all.")
    if depth > MAX_DEPTH:
        raise _invalid(param, f"filters nested too deeply. Expected at most {MAX_DEPTH} levels.")
    if not isinstance(value, dict):
        raise InvalidRequest(
            f"Invalid type for '{param}': expected an object, but got {_json_type(value)} instead.",
            param=param,
            code="invalid_type",
        )
    kind = value.get("type")
    if "type" not in value:
        raise InvalidRequest(f"Missing required parameter: '{param}.type'.", param=f"{param}.type")
    if kind in COMPOUNDS:
        return _compound(value, str(kind), param, depth, counter)
    if kind in COMPARISONS:
        return _comparison(value, str(kind), param)
    supported = ", ".join(f"'{name}'" for name in (*COMPARISONS, *COMPOUNDS))
    raise InvalidRequest(
        f"Invalid value: {kind!r}. Supported values are: {supported}.",
        param=f"{param}.type",
        code="invalid_value",
    )


def _unknown_fields(value: dict[str, Any], allowed: set[str], param: str) -> None:
    for name in value:
        if name not in allowed:
            raise InvalidRequest(
                f"Unrecognized request argument supplied: {param}.{name}",
                param=f"{param}.{name}",
            )


def _compound(
    value: dict[str, Any], kind: str, param: str, depth: int, counter: list[int]
) -> Compound:
    _unknown_fields(value, {"type", "filters"}, param)
    if "filters" not in value:
        raise InvalidRequest(
            f"Missing required parameter: '{param}.filters'.", param=f"{param}.filters"
        )
    items = value["filters"]
    if not isinstance(items, list):
        raise InvalidRequest(
            f"Invalid type for '{param}.filters': expected an array, but got "
            f"{_json_type(items)} instead.",
            param=f"{param}.filters",
            code="invalid_type",
        )
    if not items:
        raise _invalid(
            f"{param}.filters",
            "array too short. Expected an array with minimum length 1, but got an array with "
            "length 0 instead.",
            "array_below_min_length",
        )
    parsed = tuple(
        _parse(item, f"{param}.filters[{index}]", depth + 1, counter)
        for index, item in enumerate(items)
    )
    return Compound(kind, parsed)


def _comparison(value: dict[str, Any], kind: str, param: str) -> Comparison:
    _unknown_fields(value, {"type", "key", "value"}, param)
    for name in ("key", "value"):
        if name not in value:
            raise InvalidRequest(
                f"Missing required parameter: '{param}.{name}'.", param=f"{param}.{name}"
            )
    key = value["key"]
    if not isinstance(key, str):
        raise InvalidRequest(
            f"Invalid type for '{param}.key': expected a string, but got {_json_type(key)} "
            "instead.",
            param=f"{param}.key",
            code="invalid_type",
        )
    if not key or len(key) > MAX_KEY_LENGTH:
        raise _invalid(
            f"{param}.key", f"expected a key of 1 to {MAX_KEY_LENGTH} characters, got {len(key)}."
        )
    operand = value["value"]
    where = f"{param}.value"
    if kind in ("in", "nin"):
        if not isinstance(operand, list):
            raise _invalid(
                where, f"'{kind}' compares with an array, but got {_json_type(operand)}."
            )
        if not operand or len(operand) > MAX_IN_VALUES:
            raise _invalid(
                where, f"expected an array of 1 to {MAX_IN_VALUES} values, got {len(operand)}."
            )
        for index, item in enumerate(operand):
            if not (isinstance(item, str) or _is_number(item)):
                raise _invalid(
                    f"{where}[{index}]",
                    f"expected a string or a number, but got {_json_type(item)} instead.",
                )
            _finite(item, f"{where}[{index}]")
        return Comparison(kind, key, tuple(operand))
    if isinstance(operand, list | dict) or operand is None:
        expected = (
            "a string, a number or a boolean" if kind in ("eq", "ne") else "a string or a number"
        )
        raise _invalid(where, f"'{kind}' expects {expected}, but got {_json_type(operand)}.")
    if kind not in ("eq", "ne") and isinstance(operand, bool):
        raise _invalid(where, f"'{kind}' expects a string or a number, but got a boolean.")
    _finite(operand, where)
    scalar: Scalar = operand
    return Comparison(kind, key, scalar)


def _finite(value: Any, param: str) -> None:
    if isinstance(value, float) and not math.isfinite(value):
        raise _invalid(param, "expected a finite number.")


# --- SQL translation -------------------------------------------------------------------------


def filter_clause(flt: Filter | None, attributes: Any, dialect: str) -> ColumnElement[bool]:
    """The SQL condition that `flt` puts on a JSON `attributes` column, for `dialect`."""
    if flt is None:
        return true()
    if isinstance(flt, Compound):
        parts = [filter_clause(item, attributes, dialect) for item in flt.filters]
        return and_(*parts) if flt.type == "and" else or_(*parts)
    if flt.type == "ne":
        return not_(_eq(flt.key, flt.value, attributes, dialect))
    if flt.type in ("in", "nin"):
        assert isinstance(flt.value, tuple)
        any_of = or_(*(_eq(flt.key, item, attributes, dialect) for item in flt.value))
        return any_of if flt.type == "in" else not_(any_of)
    if flt.type == "eq":
        return _eq(flt.key, flt.value, attributes, dialect)
    return _order(flt.type, flt.key, flt.value, attributes, dialect)


_SQL_OPS = {"gt": ">", "gte": ">=", "lt": "<", "lte": "<="}


def _eq(key: str, value: Any, attributes: Any, dialect: str) -> ColumnElement[bool]:
    if dialect == "sqlite":
        item = func.json_each(attributes).table_valued("key", "value", "type").alias()
        if isinstance(value, bool):
            typed = item.c.type == ("true" if value else "false")
        elif isinstance(value, str):
            typed = and_(item.c.type == "text", item.c.value == literal(value))
        else:
            typed = and_(item.c.type.in_(("integer", "real")), item.c.value == float(value))
        return exists().where(item.c.key == key, typed)
    node = attributes[key]
    # A missing key makes these NULL, not false, and NOT NULL is NULL: `ne`/`nin` need false.
    if isinstance(value, bool):
        return func.coalesce(
            and_(
                func.json_typeof(node) == "boolean",
                node.as_string() == ("true" if value else "false"),
            ),
            false(),
        )
    if isinstance(value, str):
        return func.coalesce(
            and_(func.json_typeof(node) == "string", node.as_string() == value), false()
        )
    return _pg_number(node, "=", float(value))


def _order(kind: str, key: str, value: Any, attributes: Any, dialect: str) -> ColumnElement[bool]:
    op = _SQL_OPS[kind]
    if dialect == "sqlite":
        item = func.json_each(attributes).table_valued("key", "value", "type").alias()
        if isinstance(value, str):
            typed = and_(item.c.type == "text", item.c.value.op(op)(literal(value)))
        else:
            typed = and_(item.c.type.in_(("integer", "real")), item.c.value.op(op)(float(value)))
        return exists().where(item.c.key == key, typed)
    node = attributes[key]
    if isinstance(value, str):
        return func.coalesce(
            and_(
                func.json_typeof(node) == "string",
                node.as_string().collate("C").op(op)(literal(value).collate("C")),
            ),
            false(),
        )
    return _pg_number(node, op, float(value))


def _pg_number(node: Any, op: str, value: float) -> ColumnElement[bool]:
    # CASE, not AND: PostgreSQL may evaluate AND's operands in any order, and casting a string
    # attribute to a number would fail the whole query.
    return case(
        (
            func.json_typeof(node) == "number",
            cast(node.as_string(), Float).op(op)(literal(value, Float)),
        ),
        else_=false(),
    )
