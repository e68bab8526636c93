"""Turns a kernel's iopub messages into code_interpreter output, with the worker's own caps.

The kernel caps its output too (kernel_boot.py), but code inside the sandbox can bypass that,
so this is the cap that counts: at most `max_output_bytes` of text (UTF-8) and `max_images`
PNGs of at most `max_image_bytes` each per execution, whatever arrives. Text pieces are handed
to `on_output` as they come and are exactly the pieces `logs` is made of, so appending streamed
pieces yields the final logs (the invariant the step deltas rely on).
"""

from __future__ import annotations

import base64
import binascii
import re
from typing import Any

from assistants.sandbox.base import (
    ExecutionResult,
    ExecutionStatus,
    OnOutput,
    OutputChunk,
    OutputKind,
    SandboxLimits,
)

_ANSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]")
_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def strip_ansi(text: str) -> str:
    return _ANSI.sub("", text)


def _cut_utf8(text: str, max_bytes: int) -> str:
    data = text.encode("utf-8", "surrogatepass")
    if len(data) <= max_bytes:
        return text
    return data[:max_bytes].decode("utf-8", "ignore")


class OutputCollector:
    """Accumulates one execution's output. Call the `on_*` methods in arrival order."""

    def __init__(self, limits: SandboxLimits, on_output: OnOutput | None) -> None:
        self._limits = limits
        self._on_output = on_output
        self._parts: list[str] = []
        self._text_bytes = 0
        self._truncated = False
        self._images: list[bytes] = []
        self._images_dropped = 0
        self._error: str | None = None
        self._last_kind: OutputKind = "stdout"

    @property
    def logs(self) -> str:
        return "".join(self._parts)

    @property
    def error(self) -> str | None:
        return self._error

    def _separator(self, kind: OutputKind) -> str:
        """A result, a traceback or a note is a line of its own (so is text right after one)."""
        streams = ("stdout", "stderr")
        if (
            self._parts
            and not self._parts[-1].endswith("\n")
            and (kind not in streams or self._last_kind not in streams)
        ):
            return "\n"
        return ""

    async def _emit(self, kind: OutputKind, text: str) -> None:
        if not text:
            return
        text = self._separator(kind) + text
        self._parts.append(text)
        self._last_kind = kind
        if self._on_output is not None:
            await self._on_output(OutputChunk(kind=kind, text=text))

    async def text(self, kind: OutputKind, text: str) -> None:
        """stdout/stderr text, a result's or a display's text/plain: counted against the cap."""
        if self._truncated or not text:
            return
        sep = len(self._separator(kind))
        room = max(0, self._limits.max_output_bytes - self._text_bytes - sep)
        cut = _cut_utf8(text, room)
        self._text_bytes += sep + len(cut.encode("utf-8", "surrogatepass"))
        await self._emit(kind, cut)
        if len(cut) < len(text):
            self._truncated = True
            await self.notice(
                f"[output truncated: more than {self._limits.max_output_bytes} bytes]"
            )

    async def notice(self, text: str) -> None:
        """A line from the sandbox layer itself (truncation, timeout, loss); never capped."""
        await self._emit("notice", text + "\n")

    async def traceback(self, lines: list[str]) -> None:
        """An exception: kept whole up to the cap of its own, even after text overflowed."""
        text = _cut_utf8(strip_ansi("\n".join(lines)), self._limits.max_output_bytes)
        self._error = text
        await self._emit("error", text + "\n")

    async def image(self, png_base64: str) -> None:
        if len(self._images) >= self._limits.max_images:
            self._images_dropped += 1
            return
        try:
            png = base64.b64decode(png_base64, validate=False)
        except (binascii.Error, ValueError):
            return
        if len(png) > self._limits.max_image_bytes or not png.startswith(_PNG_MAGIC):
            self._images_dropped += 1
            return
        self._images.append(png)
        if self._on_output is not None:
            await self._on_output(OutputChunk(kind="image", image=png))

    async def message(self, msg_type: str, content: dict[str, Any]) -> None:
        """Feed one iopub message of the execution (other types are ignored)."""
        if msg_type == "stream":
            kind: OutputKind = "stderr" if content.get("name") == "stderr" else "stdout"
            await self.text(kind, str(content.get("text", "")))
        elif msg_type in ("execute_result", "display_data", "update_display_data"):
            data = content.get("data") or {}
            png = data.get("image/png")
            if isinstance(png, str):
                await self.image(png)
            elif isinstance(data.get("text/plain"), str):
                text = data["text/plain"]
                await self.text("result" if msg_type == "execute_result" else "display", text)
        elif msg_type == "error":
            lines = content.get("traceback") or [
                f"{content.get('ename', 'Error')}: {content.get('evalue', '')}"
            ]
            await self.traceback([str(line) for line in lines])

    async def finish(
        self, status: ExecutionStatus, *, duration_s: float, error: str | None = None
    ) -> ExecutionResult:
        if self._images_dropped:
            await self.notice(
                f"[images were dropped: at most {self._limits.max_images} per execution, "
                f"{self._limits.max_image_bytes} bytes each]"
            )
        return ExecutionResult(
            status=status,
            logs=self.logs,
            images=list(self._images),
            error=error if error is not None else self._error,
            truncated=self._truncated or self._images_dropped > 0,
            duration_s=duration_s,
        )
