"""`@function_tool`: schemas from type hints and docstrings, argument checking, invocation, and
loading tools from modules."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Literal

import pytest
from pydantic import BaseModel

from assistants.tool_outputs import submission_problem
from assistants.tools import (
    ToolError,
    ToolRegistry,
    ToolRegistryError,
    current_call_id,
    function_tool,
)
from assistants.tools.registry import ToolArgumentsError


class Address(BaseModel):
    street: str
    city: str


@function_tool(timeout_s=9, max_attempts=5, on_error="fail")
def ship(order_id: int, to: Address, speed: Literal["slow", "fast"] = "slow") -> dict[str, object]:
    """Ship an order.

    Longer explanation that is not part of the summary.

    Args:
        order_id: The order to ship.
        to: Where to ship it,
            on two lines.
        speed: How fast.

    Returns:
        The shipment.
    """
    return {"order": order_id, "city": to.city, "speed": speed}


@function_tool(name="whoami")
async def who_am_i() -> str:
    """Return the call id."""
    await asyncio.sleep(0)
    return current_call_id() or "none"


def test_schema_comes_from_hints_and_docstring() -> None:
    definition = ship.definition()["function"]
    assert definition["name"] == "ship"
    assert definition["description"] == (
        "Ship an order. Longer explanation that is not part of the summary."
    )
    params = definition["parameters"]
    assert params["type"] == "object" and params["required"] == ["order_id", "to"]
    assert params["additionalProperties"] is False
    props = params["properties"]
    assert props["order_id"] == {"type": "integer", "description": "The order to ship."}
    assert props["speed"]["enum"] == ["slow", "fast"] and props["speed"]["default"] == "slow"
    assert props["to"]["description"] == "Where to ship it, on two lines."
    assert "title" not in json.dumps(params)  # pydantic's titles are noise for a model
    assert ship.policy.timeout_s == 9 and ship.policy.max_attempts == 5
    assert ship.policy.on_error == "fail" and ship.policy.heartbeat_timeout_s == 3


def test_invoke_validates_and_serialises() -> None:
    output = asyncio.run(
        ship.invoke('{"order_id": 7, "to": {"street": "Main St", "city": "Oslo"}}')
    )
    assert json.loads(output) == {"order": 7, "city": "Oslo", "speed": "slow"}
    assert ship(1, Address(street="a", city="b"))["city"] == "b"  # still a plain function


@pytest.mark.parametrize(
    "arguments",
    ['{"order_id": "x", "to": {}}', '{"order_id": 1}', "not json", '{"order_id": 1, "extra": 2}'],
)
def test_bad_arguments_are_a_tool_error(arguments: str) -> None:
    with pytest.raises(ToolArgumentsError) as error:
        asyncio.run(ship.invoke(arguments))
    assert isinstance(error.value, ToolError)
    assert str(error.value).startswith("Invalid arguments for ship: ")


def test_async_tools_see_their_call_id() -> None:
    assert who_am_i.name == "whoami"
    assert asyncio.run(who_am_i.invoke("{}", "call_abc")) == "call_abc"
    assert who_am_i.parameters == {
        "additionalProperties": False,
        "properties": {},
        "type": "object",
    }


def test_registry_loads_modules_and_rejects_clashes() -> None:
    registry = ToolRegistry.from_modules(["tests.support.tools"])
    assert "get_weather" in registry and "nope" not in registry
    assert [t.name for t in registry][:2] == ["always_fails", "charge_card"]
    with pytest.raises(ValueError, match="defines no @function_tool"):
        ToolRegistry.from_modules(["json"])
    clash = function_tool(name="ship")(lambda: "other")
    with pytest.raises(ValueError, match="two registered tools are named 'ship'"):
        ToolRegistry([ship, clash])


def test_modules_are_found_in_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # What `durable-assistants worker` (a console script, no cwd on sys.path) needs to find a
    # project's own `myapp.tools`.
    package = tmp_path / "myapp_tools_pkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "tools.py").write_text(
        "from assistants.tools import function_tool\n\n"
        "@function_tool\ndef ping() -> str:\n    'Ping.'\n    return 'pong'\n"
    )
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(tmp_path))])
    assert [t.name for t in ToolRegistry.from_modules(["myapp_tools_pkg.tools"])] == ["ping"]
    with pytest.raises(ToolRegistryError, match=r"tool module 'nowhere\.tools' not found"):
        ToolRegistry.from_modules(["nowhere.tools"])


def test_invalid_names_and_signatures() -> None:
    with pytest.raises(ValueError, match="invalid tool name"):
        function_tool(name="has space")(lambda: None)

    def star(*args: int) -> None: ...

    with pytest.raises(TypeError, match=r"\*args"):
        function_tool(star)


def test_submission_rules() -> None:
    assert submission_problem("requires_action", ["a", "b"], ["b", "a"]) is None
    assert submission_problem("expired", ["a"], ["a"]) == (
        'Runs in status "expired" do not accept tool outputs.',
        None,
    )
    assert submission_problem("requires_action", ["a", "b"], ["a"]) == (
        "Expected tool outputs for call_ids ['a', 'b'], got ['a'].",
        "tool_outputs",
    )
    problem = submission_problem("requires_action", ["a"], ["a", "a"])
    assert problem is not None and problem[0] == "Duplicate tool output for call_id 'a'."
