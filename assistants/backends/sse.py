"""An incremental server-sent events decoder for streamed chat completions.

Why it exists: the model backend reads `text/event-stream` bytes straight off the connection
(no SDK in between, see `openai_compatible`), and a network read ends wherever TCP put it: in
the middle of a line, between the CR and the LF of a CRLF, inside a multi-byte character. This
decoder buffers the partial line and hands back whole events only.

It follows the WHATWG event-stream rules for what a chat completion stream uses: lines end with
LF, CRLF or a lone CR; a line starting with `:` is a comment (servers and proxies send them as
keep-alives); `data:` lines accumulate (joined with LF) until a blank line dispatches the event;
`event:` names it; `id:`, `retry:` and unknown fields are ignored. An event without data (a bare
`event:` or a lone blank line) is not dispatched.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Event:
    """One dispatched event. `data` stays bytes: `json.loads` takes UTF-8 bytes directly."""

    data: bytes
    event: str | None = None


class SSEDecoder:
    def __init__(self) -> None:
        self._partial = b""  # the unfinished line carried over from the previous read
        self._skip_lf = False  # the previous read ended with CR: a leading LF ends the same line
        self._event: str | None = None
        self._data: list[bytes] = []

    def feed(self, chunk: bytes) -> list[Event]:
        """The events that the bytes read so far complete."""
        if self._skip_lf and chunk[:1] == b"\n":
            chunk = chunk[1:]
        self._skip_lf = False
        if b"\r" in chunk:
            self._skip_lf = chunk[-1:] == b"\r"
            chunk = chunk.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        if self._partial:
            chunk = self._partial + chunk
        lines = chunk.split(b"\n")
        self._partial = lines.pop()
        events: list[Event] = []
        for line in lines:
            if not line:
                if self._data:
                    events.append(self._dispatch())
                self._event = None
            elif line[0] != 0x3A:  # ":" starts a comment
                self._field(line)
        return events

    def finish(self) -> list[Event]:
        """At the end of the body: the event whose closing blank line never came, if any (its
        data is complete when the last line was; a cut-off JSON fails to parse downstream)."""
        if self._partial:
            self._field(self._partial)
            self._partial = b""
        return [self._dispatch()] if self._data else []

    def _field(self, line: bytes) -> None:
        name, _, value = line.partition(b":")
        if value[:1] == b" ":
            value = value[1:]
        if name == b"data":
            self._data.append(value)
        elif name == b"event":
            self._event = value.decode("utf-8", "replace")

    def _dispatch(self) -> Event:
        data = self._data[0] if len(self._data) == 1 else b"\n".join(self._data)
        event = Event(data, self._event)
        self._data = []
        self._event = None
        return event
