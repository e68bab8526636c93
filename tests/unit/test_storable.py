"""What the store may hold: the checks every write path runs before storing client input, and the
repair of text the server generates (model output split across chunks)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from assistants.storable import MAX_JSON_DEPTH, TextRepair, find_problem, printable, repair
from assistants.store.db import dump_json


def _nested(depth: int) -> dict[str, Any]:
    value: dict[str, Any] = {}
    for _ in range(depth - 1):
        value = {"a": value}
    return value


def test_clean_json_has_no_problem() -> None:
    body = {"model": "gpt-4o", "metadata": {"emoji": "😀", "accents": "déjà vu"}, "n": [1, 2.5]}
    assert find_problem(body) is None
    assert find_problem(_nested(MAX_JSON_DEPTH)) is None


@pytest.mark.parametrize(
    ("body", "param", "kind"),
    [
        ({"metadata": {"k": "a\ud800"}}, "metadata.k", "surrogate"),
        ({"metadata": {"\udfff": "v"}}, "metadata.\\udfff", "surrogate"),
        ({"tools": [{"type": "x"}, {"p": ["ok", "\udc00\ud800"]}]}, "tools[1].p[1]", "surrogate"),
        ({"name": "bad\x00name"}, "name", "null"),
        ({"a\x00": 1}, "a\\u0000", "null"),
    ],
)
def test_the_first_problem_is_named_by_its_parameter(body: Any, param: str, kind: str) -> None:
    problem = find_problem(body)
    assert problem is not None
    assert (problem.param, problem.kind) == (param, kind)
    assert problem.message.startswith(f"Invalid '{param}': string contains")
    json.dumps(problem.message, ensure_ascii=False).encode("utf-8")  # a response can carry it


def test_problems_are_reported_in_document_order() -> None:
    problem = find_problem({"a": {"b": "\x00"}, "c": "\ud800"})
    assert problem is not None and problem.param == "a.b"


def test_depth_is_measured_without_recursion() -> None:
    problem = find_problem(_nested(MAX_JSON_DEPTH + 1))
    assert problem is not None and problem.kind == "depth"
    deep: list[Any] = []
    for _ in range(200_000):  # far beyond Python's recursion limit
        deep = [deep]
    problem = find_problem(deep)
    assert problem is not None and problem.kind == "depth"
    assert "at most 64 levels" in problem.message


def test_printable_spells_what_a_response_cannot_carry() -> None:
    assert printable("a\ud800\x00é") == "a\\ud800\\u0000é"


def test_repair_joins_pairs_and_replaces_lone_halves() -> None:
    assert repair("plain") == "plain"
    assert repair("a\ud83d\ude00b") == "a😀b"
    assert repair("a\ud800b\udc00") == "a\ufffdb\ufffd"


def test_text_repair_joins_a_pair_split_across_chunks() -> None:
    stream = TextRepair()
    assert stream.feed("smile \ud83d") == "smile "
    assert stream.feed("\ude00!") == "😀!"
    assert stream.feed("bad \ud800") == "bad "
    assert stream.feed(" x") == "\ufffd x"
    assert stream.feed("end \udbff") == "end "
    assert stream.flush() == "\ufffd"
    assert stream.flush() == ""


def test_the_store_serializer_refuses_what_it_could_not_serve() -> None:
    assert json.loads(dump_json({"k": "😀 déjà"})) == {"k": "😀 déjà"}
    with pytest.raises(UnicodeEncodeError):
        dump_json({"k": "\ud800"})
    with pytest.raises(ValueError):
        dump_json({"k": float("nan")})
