"""What the model sees of code_interpreter and how its streamed code is decoded."""

from __future__ import annotations

import itertools
import json

import pytest

from assistants.code_interpreter.tool import (
    MODEL_OUTPUT_CHARS,
    StreamedCode,
    definition,
    model_output,
    parse_code,
    sandbox_links,
    tool_choice,
)

CODE = 'print("héllo\\tworld")\nx = {"a": 1}  # 😀 \\ done'


@pytest.mark.parametrize("size", [1, 2, 3, 7, 1000])
def test_streamed_code_decodes_json_fragments_of_any_size(size: int) -> None:
    raw = json.dumps({"code": CODE})  # ensure_ascii: \\u escapes and a surrogate pair
    streamed = StreamedCode()
    seen = []
    for start in range(0, len(raw), size):
        streamed.feed(raw[start : start + size])
        seen.append(streamed.decoded)
    assert streamed.decoded == CODE == parse_code(raw)
    assert all(a == b[: len(a)] for a, b in itertools.pairwise(seen))  # only grows


def test_raw_code_streams_and_parses_as_is() -> None:
    streamed = StreamedCode()
    for part in ("import math\n", "math.pi"):
        streamed.feed(part)
    assert streamed.decoded == "import math\nmath.pi" == parse_code("import math\nmath.pi")


def test_parse_code_strips_a_fence_and_takes_other_json_shapes() -> None:
    assert parse_code(json.dumps({"code": "```python\n1 + 1\n```"})) == "1 + 1"
    assert parse_code(json.dumps("2 + 2")) == "2 + 2"
    assert parse_code("{not json") == "{not json"


def test_definition_and_tool_choice() -> None:
    tool = definition(60.0)
    assert tool["function"]["name"] == "python"
    assert tool["function"]["parameters"]["required"] == ["code"]
    assert "60 seconds" in tool["function"]["description"]
    assert tool_choice() == {"type": "function", "function": {"name": "python"}}


def test_sandbox_links() -> None:
    text = "See [it](sandbox:/mnt/data/out/t.csv). Or sandbox:/mnt/data/chart.png."
    links = sandbox_links(text)
    assert [(text[s:e], p) for s, e, p in links] == [
        ("sandbox:/mnt/data/out/t.csv", "out/t.csv"),
        ("sandbox:/mnt/data/chart.png", "chart.png"),
    ]


def test_model_output_keeps_head_and_tail() -> None:
    logs = "a" * MODEL_OUTPUT_CHARS + "b" * 100
    text = model_output(logs, ["file-1"])
    assert text.startswith("a" * 100) and "characters omitted" in text
    assert text.endswith("b" * 100 + "\n[image file-1 displayed to the user]")
    assert model_output("", []) == "[no output]"
