"""What the store may hold: text every response can carry, JSON no reader recurses too deep into.

Why it exists: a JSON request can spell things Python parses happily but nothing downstream can
use. A lone UTF-16 surrogate (`"\\ud800"`) becomes a Python string that has no UTF-8 form, so once
stored, every response containing it fails to serialise (a whole project's `GET /assistants`
answered 500). U+0000 cannot live in PostgreSQL text. And JSON nested a thousand levels deep makes
every recursive reader (pydantic, the JSON encoder, the store's serializer) raise `RecursionError`.

So every write path checks its input here before anything else looks at it: the HTTP API for
every JSON body and query parameter (`assistants.api.http`), runs started through Temporal
(`activities.runs.record_run`). Text the server did not get from a client (model output, tool
outputs) is repaired rather than refused (`TextRepair`, `repair`): a model's stream may split a
surrogate pair across two chunks, which must join, and a stray half becomes U+FFFD. The store's
JSON serializer refuses anything left over (`assistants.store.db`), so a path forgotten here fails
its write instead of poisoning every later read.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Literal

# How deeply a request's JSON may nest. A structured-output schema may nest 10 levels of objects
# (about 20 JSON levels, under `tools[0].function.parameters`): 64 leaves room for any request
# the API takes, and stays far below Python's recursion limit for every reader after us.
MAX_JSON_DEPTH = 64

_SURROGATE = re.compile("[\ud800-\udfff]")


@dataclass(frozen=True)
class Problem:
    """The first thing in a value that cannot be stored: where (a parameter path such as
    `tools[0].function.parameters`), what, and an OpenAI-style message saying so."""

    param: str
    kind: Literal["null", "surrogate", "depth"]
    message: str


def printable(text: str) -> str:
    """`text` safe to put in a response: lone surrogates and U+0000 spelled as escapes."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8").replace("\x00", "\\u0000")


def nested_too_deeply(max_depth: int = MAX_JSON_DEPTH) -> str:
    return (
        "The request body is nested too deeply: JSON may nest at most "
        f"{max_depth} levels of objects and arrays."
    )


def _string_problem(text: str) -> tuple[Literal["null", "surrogate"], str] | None:
    if "\x00" in text:
        return "null", "string contains a null character (\\u0000)."
    if not text.isascii():
        found = _SURROGATE.search(text)
        if found is not None:
            escaped = f"\\u{ord(found.group()):04x}"
            return "surrogate", (
                f"string contains an unpaired surrogate ({escaped}), which is not valid Unicode."
            )
    return None


def _render(path: tuple[Any, ...]) -> str:
    """A linked path `(parent, step)` as `a.b[0].c`."""
    steps: list[str | int] = []
    while path:
        path, step = path
        steps.append(step)
    out = ""
    for step in reversed(steps):
        if isinstance(step, int):
            out += f"[{step}]"
        else:
            name = printable(step)
            out += f".{name}" if out else name
    return out


def find_problem(value: Any, *, max_depth: int = MAX_JSON_DEPTH) -> Problem | None:
    """The first problem (in document order) in a parsed JSON value, or None.

    Iterative, so a value nested deeper than Python's recursion limit is measured, not crashed
    on. Paths are linked tuples, rendered only for the problem found: a large body costs one pass.
    """
    # Each entry: (value, path, depth of the container holding it).
    stack: list[tuple[Any, tuple[Any, ...], int]] = [(value, (), 0)]
    while stack:
        item, path, depth = stack.pop()
        if isinstance(item, str):
            found = _string_problem(item)
            if found is not None:
                param = _render(path)
                return Problem(param, found[0], f"Invalid '{param}': {found[1]}")
            continue
        if isinstance(item, dict | list):
            if depth + 1 > max_depth:
                return Problem(_render(path), "depth", nested_too_deeply(max_depth))
            children: list[tuple[Any, tuple[Any, ...], int]] = []
            if isinstance(item, dict):
                for key, child in item.items():
                    step = (path, key)
                    found = _string_problem(key)
                    if found is not None:
                        param = _render(step)
                        return Problem(param, found[0], f"Invalid '{param}': {found[1]}")
                    children.append((child, step, depth + 1))
            else:
                children = [(child, (path, i), depth + 1) for i, child in enumerate(item)]
            stack.extend(reversed(children))
    return None


def repair(text: str) -> str:
    """Text from a model or a tool, made storable: surrogate pairs joined, lone halves → U+FFFD.
    (U+0000 stays: stored inside JSON it is an escape, which every backend holds.)"""
    if text.isascii() or _SURROGATE.search(text) is None:
        return text
    return text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")


class TextRepair:
    """`repair` for a stream of chunks: a high surrogate that ends one chunk waits for the low
    one that may start the next (a backend written in a UTF-16 language can split a pair)."""

    def __init__(self) -> None:
        self._held = ""

    def feed(self, chunk: str) -> str:
        text = self._held + chunk
        self._held = ""
        if text and "\ud800" <= text[-1] <= "\udbff":
            text, self._held = text[:-1], text[-1]
        return repair(text)

    def flush(self) -> str:
        """What is still held at the end of the stream (a half pair: U+FFFD)."""
        held, self._held = self._held, ""
        return repair(held)
