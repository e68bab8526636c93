"""How the model sees code_interpreter: a function tool named `python` taking `code`.

Models trained on the hosted tool know it as `python` ("a stateful Jupyter notebook
environment"), and gpt-oss's builtin tool has the same name and argument, so that is what a Chat
Completions backend is offered. The client never sees the function: the call is a
`code_interpreter` tool call on the step (input = the code), never `requires_action`.
"""

from __future__ import annotations

import json
import re
from typing import Any

TOOL_NAME = "python"
KIND = "code_interpreter"
# What the model reads back: the head and the tail of long logs (the step keeps more).
MODEL_OUTPUT_CHARS = 8192

_DESCRIPTION = (
    "Execute Python code in a stateful Jupyter notebook environment: variables and imports "
    "persist between calls in this thread, and the value of the last expression is displayed. "
    "python will respond with the output of the execution or time out after {timeout:g} seconds. "
    "The drive at '/mnt/data' holds the user's files and can be used to save files for the "
    "user; link to them as sandbox:/mnt/data/<name>. Internet access is disabled: no pip "
    "install. numpy, pandas and matplotlib are installed; plots are shown to the user."
)


def enabled(run_tools: list[dict[str, Any]]) -> bool:
    return any(t.get("type") == KIND for t in run_tools)


def definition(timeout_s: float, files: list[str] | None = None) -> dict[str, Any]:
    description = _DESCRIPTION.format(timeout=timeout_s)
    if files:
        description += " Files available: " + ", ".join(f"/mnt/data/{f}" for f in files) + "."
    return {
        "type": "function",
        "function": {
            "name": TOOL_NAME,
            "description": description,
            "parameters": {
                "type": "object",
                "properties": {"code": {"type": "string", "description": "The code to run."}},
                "required": ["code"],
            },
        },
    }


def tool_choice() -> dict[str, Any]:
    """`tool_choice: {"type": "code_interpreter"}` forces the function."""
    return {"type": "function", "function": {"name": TOOL_NAME}}


_FENCE = re.compile(r"^\s*```(?:python|py)?\s*\n(.*?)\n?```\s*$", re.DOTALL)


def parse_code(arguments: str) -> str:
    """The code of a call: JSON `{"code": …}`; a model that emits raw code (harmony-native models
    can) gets its whole text taken as code. A surrounding ```python fence is stripped."""
    code = arguments
    try:
        value = json.loads(arguments)
    except ValueError:
        value = None
    if isinstance(value, dict) and isinstance(value.get("code"), str):
        code = value["code"]
    elif isinstance(value, str):
        code = value
    fenced = _FENCE.match(code)
    return fenced.group(1) if fenced else code


_PREFIX = re.compile(r'\s*\{\s*"code"\s*:\s*"')
_ESCAPES = {'"': '"', "\\": "\\", "/": "/", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t"}


class StreamedCode:
    """Decodes the `code` string of streamed JSON arguments as they arrive, so the client sees
    the code itself (not JSON) in `code_interpreter.input` deltas. Arguments that are not
    `{"code": "…` stream as they are. The stored input (`parse_code`) is authoritative."""

    def __init__(self) -> None:
        self.raw = ""
        self.decoded = ""
        self._pos: int | None = None  # where undecoded string content starts in `raw`
        self._mode = "?"  # "?" undecided, "json", "raw", "done"

    def feed(self, fragment: str) -> None:
        self.raw += fragment
        if self._mode == "?":
            match = _PREFIX.match(self.raw)
            if match:
                self._mode, self._pos = "json", match.end()
            elif self.raw.lstrip() and not _could_become_prefix(self.raw):
                self._mode = "raw"
        if self._mode == "raw":
            self.decoded = self.raw
        elif self._mode == "json":
            self._decode()

    def _decode(self) -> None:
        assert self._pos is not None
        raw, pos, out = self.raw, self._pos, []
        while pos < len(raw):
            char = raw[pos]
            if char == '"':
                self._mode = "done"
                break
            if char != "\\":
                out.append(char)
                pos += 1
                continue
            if pos + 1 >= len(raw):
                break
            escape = raw[pos + 1]
            if escape != "u":
                out.append(_ESCAPES.get(escape, escape))
                pos += 2
                continue
            if pos + 6 > len(raw):
                break
            unit = int(raw[pos + 2 : pos + 6], 16)
            if 0xD800 <= unit < 0xDC00:  # a surrogate pair: wait for its second half
                if pos + 12 > len(raw):
                    break
                low = int(raw[pos + 8 : pos + 12], 16)
                out.append(chr(0x10000 + ((unit - 0xD800) << 10) + (low - 0xDC00)))
                pos += 12
            else:
                out.append(chr(unit))
                pos += 6
        self.decoded += "".join(out)
        self._pos = pos


def _could_become_prefix(raw: str) -> bool:
    stripped = re.sub(r"\s+", "", raw)
    return '{"code":"'.startswith(stripped)


_LINK = re.compile(r"sandbox:/mnt/data/[^\s)\]\"'<>]+")


def sandbox_links(text: str) -> list[tuple[int, int, str]]:
    """`(start, end, path under /mnt/data)` of every `sandbox:/mnt/data/…` link in a reply."""
    found = []
    for match in _LINK.finditer(text):
        link = match.group(0).rstrip(".,;:!?")
        found.append((match.start(), match.start() + len(link), link[len("sandbox:/mnt/data/") :]))
    return found


def model_output(logs: str, images: list[str]) -> str:
    """The `tool` message the model reads: the logs (head and tail when long) and a line per
    image shown to the user."""
    text = logs
    if len(text) > MODEL_OUTPUT_CHARS:
        half = MODEL_OUTPUT_CHARS // 2
        dropped = len(text) - 2 * half
        text = f"{text[:half]}\n[… {dropped} characters omitted …]\n{text[-half:]}"
    lines = [text] if text else []
    lines += [f"[image {file_id} displayed to the user]" for file_id in images]
    return "\n".join(lines) if lines else "[no output]"
