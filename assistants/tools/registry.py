"""Function tools that the worker executes itself.

A developer decorates an ordinary function with `@function_tool`; its JSON schema comes from the
type hints (through pydantic) and its description from the docstring. The worker imports the
modules named in `ASSISTANTS_TOOL_MODULES` (or `--tools`) and registers every decorated function it
finds there. When the model calls a function whose name is registered, the run does not stop in
`requires_action`: the worker runs the function as a Temporal activity, with the tool's own timeout
and retry policy, and hands the output straight back to the model.
"""

from __future__ import annotations

import asyncio
import contextvars
import importlib
import inspect
import json
import os
import re
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Literal, get_type_hints, overload

from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model
from pydantic_core import to_jsonable_python

from workflows.shared import ToolPolicy

NAME_PATTERN = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
_current_call: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "current_tool_call_id", default=None
)


def current_call_id() -> str | None:
    """Inside a registered tool: the id of the call being executed. Tools run at least once
    (a call is re-run if its worker dies), so use it as an idempotency key for side effects."""
    return _current_call.get()


class ToolRegistryError(ValueError):
    """The configured tool modules cannot be loaded: the worker refuses to start."""


class ToolError(Exception):
    """Raise from a tool to give the model this message as the tool's output, without retries
    (for example "no such city"). Any other exception is retried by the tool's policy first."""


class ToolArgumentsError(ToolError):
    """The model's arguments do not match the tool's parameters."""


def _docstring_parts(doc: str | None) -> tuple[str, dict[str, str]]:
    """The summary and the per-argument descriptions of a Google-style docstring."""
    if not doc:
        return "", {}
    text = inspect.cleandoc(doc)
    summary_lines: list[str] = []
    params: dict[str, str] = {}
    section: str | None = None
    current: str | None = None
    for line in text.splitlines():
        stripped = line.strip()
        if stripped in ("Args:", "Arguments:", "Parameters:"):
            section, current = "args", None
            continue
        if stripped.endswith(":") and stripped[:-1] in ("Returns", "Raises", "Yields", "Example"):
            section, current = "other", None
            continue
        if section is None:
            summary_lines.append(line)
        elif section == "args" and stripped:
            match = re.match(r"^(\w+)\s*(\([^)]*\))?\s*:\s*(.*)$", stripped)
            if match and not line.startswith((" " * 8, "\t\t")):
                current = match.group(1)
                params[current] = match.group(3)
            elif current is not None:
                params[current] = f"{params[current]} {stripped}".strip()
    return " ".join(" ".join(summary_lines).split()), params


@dataclass(frozen=True)
class FunctionTool:
    """A registered function tool: the callable, its schema and how the worker runs it."""

    name: str
    description: str
    parameters: dict[str, Any]
    policy: ToolPolicy
    fn: Callable[..., Any]
    arguments_model: type[BaseModel]

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.fn(*args, **kwargs)

    def definition(self) -> dict[str, Any]:
        """The tool as it goes to the model (Chat Completions `tools[]` entry)."""
        function: dict[str, Any] = {"name": self.name, "parameters": self.parameters}
        if self.description:
            function["description"] = self.description
        return {"type": "function", "function": function}

    def parse_arguments(self, arguments: str) -> dict[str, Any]:
        try:
            parsed = self.arguments_model.model_validate_json(arguments or "{}")
        except ValidationError as error:
            details = "; ".join(
                f"{'.'.join(str(p) for p in e['loc']) or 'arguments'}: {e['msg']}"
                for e in error.errors()
            )
            raise ToolArgumentsError(f"Invalid arguments for {self.name}: {details}") from None
        return {name: getattr(parsed, name) for name in type(parsed).model_fields}

    async def invoke(self, arguments: str, call_id: str | None = None) -> str:
        """Run the tool on the model's JSON arguments; the output as the string the model sees."""
        kwargs = self.parse_arguments(arguments)
        token = _current_call.set(call_id)
        try:
            if inspect.iscoroutinefunction(self.fn):
                result = await self.fn(**kwargs)
            else:
                # A sync tool runs on a thread (the context, call id included, goes with it) so
                # the activity keeps heartbeating meanwhile.
                result = await asyncio.to_thread(self.fn, **kwargs)
        finally:
            _current_call.reset(token)
        if isinstance(result, str):
            return result
        return json.dumps(to_jsonable_python(result))


def _strip_titles(schema: Any) -> Any:
    if isinstance(schema, dict):
        return {k: _strip_titles(v) for k, v in schema.items() if k != "title"}
    if isinstance(schema, list):
        return [_strip_titles(v) for v in schema]
    return schema


def _build(
    fn: Callable[..., Any],
    *,
    name: str | None,
    description: str | None,
    policy: ToolPolicy,
) -> FunctionTool:
    tool_name = name or fn.__name__
    if not NAME_PATTERN.match(tool_name):
        raise ValueError(
            f"invalid tool name {tool_name!r}: use a-z, A-Z, 0-9, '_' and '-', at most 64 chars"
        )
    summary, arg_docs = _docstring_parts(fn.__doc__)
    hints = get_type_hints(fn)
    fields: dict[str, Any] = {}
    for param in inspect.signature(fn).parameters.values():
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            raise TypeError(f"tool {tool_name}: *args and **kwargs cannot be described to a model")
        annotation = hints.get(param.name, Any)
        default = ... if param.default is inspect.Parameter.empty else param.default
        fields[param.name] = (annotation, Field(default, description=arg_docs.get(param.name)))
    model = create_model(f"{tool_name}_arguments", __config__=ConfigDict(extra="forbid"), **fields)
    schema = _strip_titles(model.model_json_schema())
    schema.setdefault("properties", {})
    return FunctionTool(
        name=tool_name,
        description=description if description is not None else summary,
        parameters=schema,
        policy=policy,
        fn=fn,
        arguments_model=model,
    )


@overload
def function_tool(fn: Callable[..., Any], /) -> FunctionTool: ...


@overload
def function_tool(
    *,
    name: str | None = None,
    description: str | None = None,
    timeout_s: float = 60.0,
    max_attempts: int = 3,
    heartbeat_timeout_s: float | None = None,
    on_error: Literal["message", "fail"] = "message",
    local: bool = False,
) -> Callable[[Callable[..., Any]], FunctionTool]: ...


def function_tool(
    fn: Callable[..., Any] | None = None,
    /,
    *,
    name: str | None = None,
    description: str | None = None,
    timeout_s: float = 60.0,
    max_attempts: int = 3,
    heartbeat_timeout_s: float | None = None,
    on_error: Literal["message", "fail"] = "message",
    local: bool = False,
) -> FunctionTool | Callable[[Callable[..., Any]], FunctionTool]:
    """Declare a function the worker runs when the model calls it.

    - `timeout_s`: limit for one attempt (the activity's start-to-close timeout).
    - `max_attempts`: attempts before the error is final (exceptions other than `ToolError`
      are retried with backoff).
    - `heartbeat_timeout_s`: how soon a dead worker is noticed and the call retried elsewhere
      (default: a third of `timeout_s`, at most 30 s). The worker heartbeats while the tool runs.
    - `on_error`: `"message"` hands the final error to the model as the tool output;
      `"fail"` fails the run instead.
    - `local`: run each call as a Temporal local activity, inside the workflow task that
      scheduled it, for quick calls (well under a few seconds): no round trips to the Temporal
      server, so a round costs tens of milliseconds less. The call leaves a marker in the
      run's history instead of activity events; a dead worker's call runs again when another
      worker takes the workflow task over (its timeout, 10 s) instead of after
      `heartbeat_timeout_s`; a cancelled run stops the call within a second.
    """
    if heartbeat_timeout_s is None:
        heartbeat_timeout_s = min(30.0, max(1.0, timeout_s / 3))
    policy = ToolPolicy(
        timeout_s=timeout_s,
        max_attempts=max_attempts,
        heartbeat_timeout_s=heartbeat_timeout_s,
        on_error=on_error,
        local=local,
    )

    def wrap(f: Callable[..., Any]) -> FunctionTool:
        return _build(f, name=name, description=description, policy=policy)

    return wrap(fn) if fn is not None else wrap


class ToolRegistry:
    """The function tools one worker executes, by name."""

    def __init__(self, tools: Iterable[FunctionTool] = ()) -> None:
        self._tools: dict[str, FunctionTool] = {}
        for tool in tools:
            self.register(tool)

    def register(self, tool: FunctionTool) -> None:
        existing = self._tools.get(tool.name)
        if existing is not None and existing.fn is not tool.fn:
            raise ToolRegistryError(f"two registered tools are named {tool.name!r}")
        self._tools[tool.name] = tool

    def get(self, name: str) -> FunctionTool | None:
        return self._tools.get(name)

    def __contains__(self, name: object) -> bool:
        return name in self._tools

    def __iter__(self) -> Any:
        return iter(sorted(self._tools.values(), key=lambda t: t.name))

    def __len__(self) -> int:
        return len(self._tools)

    @classmethod
    def from_modules(cls, modules: Iterable[str]) -> ToolRegistry:
        """Import each module and register every `@function_tool` at its top level. Modules are
        found in the working directory too (as `python -m` and uvicorn do): the console scripts
        `durable-assistants worker` / `dev` would otherwise not see a project's own package."""
        registry = cls()
        modules = list(modules)
        cwd = os.getcwd()
        if modules and cwd not in sys.path and "" not in sys.path:
            sys.path.insert(0, cwd)
        for module_name in modules:
            try:
                module = importlib.import_module(module_name)
            except ModuleNotFoundError as error:
                if error.name is None or not module_name.startswith(error.name):
                    raise  # the module exists but one of its own imports is missing
                raise ToolRegistryError(
                    f"tool module {module_name!r} not found (looked in {cwd} and the virtualenv)"
                ) from None
            found = [v for v in vars(module).values() if isinstance(v, FunctionTool)]
            if not found:
                raise ToolRegistryError(
                    f"module {module_name!r} defines no @function_tool functions"
                )
            for tool in found:
                registry.register(tool)
        return registry
