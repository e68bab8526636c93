"""Turning the model's `【m:i†source】` markers into `file_citation` annotations.

The markers stay in `text.value` (as on the hosted API) and each one that names a real result of
this run's searches gets an annotation `{type: file_citation, text: <marker>, start_index,
end_index, file_citation: {file_id, quote}}`; indexes count code points (Python `str` indexes),
end exclusive. A marker naming no result stays plain text.

Streaming: the SDK's `accumulate_delta` *adds* integers of list entries it merges by `index`, so
an annotation sent twice would double its `start_index`. Each annotation therefore goes out exactly
once, in the same `thread.message.delta` as its marker: a delta batch never ends inside a marker
(`flushable` holds back a `【` until its `】`, at most `MAX_MARKER` characters).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

MARKER = re.compile(r"【(\d+):(\d+)†[^】【]{0,40}】")
MAX_MARKER = 48


@dataclass
class Citer:
    """The results a run's markers can name: `(ordinal, rank) -> (file_id, quote)`."""

    sources: dict[tuple[int, int], tuple[str, str]] = field(default_factory=dict)

    def annotations(self, text: str, start: int = 0, end: int | None = None) -> list[Any]:
        """The annotations of the markers that lie entirely within `text[start:end]`."""
        stop = len(text) if end is None else end
        found: list[Any] = []
        for match in MARKER.finditer(text, start, stop):
            source = self.sources.get((int(match.group(1)), int(match.group(2))))
            if source is None:
                continue
            found.append(
                {
                    "type": "file_citation",
                    "text": match.group(0),
                    "start_index": match.start(),
                    "end_index": match.end(),
                    "file_citation": {"file_id": source[0], "quote": source[1]},
                }
            )
        return found


def flushable(text: str, start: int) -> int:
    """How far `text` may be streamed now: up to a trailing `【` that may still become a marker
    (its `】` has not arrived and it is at most `MAX_MARKER` characters old)."""
    opening = text.rfind("【", start)
    if opening < 0 or "】" in text[opening:] or len(text) - opening > MAX_MARKER:
        return len(text)
    return opening
