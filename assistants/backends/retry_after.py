"""How long a provider asks us to wait before retrying, from its response headers.

Model and embedding backends both hand this to Temporal as the next retry delay (the clients
themselves never retry: `max_retries=0`), so it lives in one place.
"""

from __future__ import annotations

from collections.abc import Mapping


def retry_after(headers: Mapping[str, str]) -> float | None:
    """Seconds from `retry-after-ms` (OpenAI's) or `retry-after`; None when absent or an HTTP
    date (the retry policy's own backoff then decides)."""
    for name, scale in (("retry-after-ms", 0.001), ("retry-after", 1.0)):
        value = headers.get(name)
        if value is None:
            continue
        try:
            return max(0.0, float(value) * scale)
        except ValueError:
            continue
    return None
