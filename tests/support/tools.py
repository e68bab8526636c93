"""Function tools the test workers register (`ASSISTANTS_TOOL_MODULES=tests.support.tools`).

They exercise what the registry promises: schemas from type hints and docstrings, retries of a
flaky tool, an error handed to the model, an error that fails the run, and a long call that
heartbeats (and survives its worker being killed). The `local_` tools are the same functions
registered with `local=True` (run as local activities).
"""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Literal

from assistants.tools import ToolError, function_tool

_attempts: Counter[str] = Counter()


@function_tool
def get_weather(city: str, unit: Literal["celsius", "fahrenheit"] = "celsius") -> dict[str, object]:
    """Current weather for a city.

    Args:
        city: The city, e.g. Paris.
        unit: Temperature unit.
    """
    return {"city": city, "temperature": 21 if unit == "celsius" else 70, "unit": unit}


@function_tool(max_attempts=4)
def flaky_lookup(key: str) -> str:
    """Look a key up in a service that fails twice per key before it answers."""
    _attempts[key] += 1
    if _attempts[key] <= 2:
        raise ConnectionError(f"lookup service unavailable (attempt {_attempts[key]})")
    return f"value-of-{key} after {_attempts[key]} attempts"


@function_tool(max_attempts=2)
def always_fails(reason: str) -> str:
    """A tool whose backend is down."""
    raise RuntimeError(f"backend down: {reason}")


@function_tool
def find_order(order_id: str) -> str:
    """Find an order by id."""
    raise ToolError(f"no order with id {order_id}")


@function_tool(on_error="fail", max_attempts=1)
def charge_card(amount_cents: int) -> str:
    """Charge the customer's card (a failure must stop the run)."""
    raise RuntimeError("payment provider rejected the charge")


@function_tool(timeout_s=60, heartbeat_timeout_s=2)
async def slow_report(seconds: float) -> str:
    """Build a report that takes a while."""
    await asyncio.sleep(seconds)
    return f"report ready after {seconds} s"


# The same functions as local activities (`@function_tool(local=True)`).
local_weather = function_tool(name="local_weather", local=True)(get_weather.fn)
local_flaky_lookup = function_tool(name="local_flaky_lookup", local=True, max_attempts=4)(
    flaky_lookup.fn
)
local_always_fails = function_tool(name="local_always_fails", local=True, max_attempts=2)(
    always_fails.fn
)
local_charge_card = function_tool(
    name="local_charge_card", local=True, on_error="fail", max_attempts=1
)(charge_card.fn)
local_slow_report = function_tool(name="local_slow_report", local=True)(slow_report.fn)
