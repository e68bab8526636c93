"""Signing and verifying completion-webhook deliveries (standard library only, so a receiver can
import it on its own).

Every delivery carries three headers:

- `Webhook-Id`: the delivery id, the same on every retry of one delivery (deduplicate on it);
- `Webhook-Timestamp`: when this attempt was signed, in unix seconds;
- `Webhook-Signature`: `v1=<hex HMAC-SHA256(secret, f"{timestamp}.{body}")>`, over the exact
  request body bytes.

A receiver recomputes the HMAC over the raw body it received (before any JSON parsing), compares
in constant time, and refuses timestamps too far from its clock, so a captured delivery cannot be
replayed later: `verify(secret, request.headers, raw_body)`.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Mapping

ID_HEADER = "Webhook-Id"
TIMESTAMP_HEADER = "Webhook-Timestamp"
SIGNATURE_HEADER = "Webhook-Signature"
SIGNATURE_VERSION = "v1"


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """The `Webhook-Signature` header value for `body` sent at `timestamp`."""
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"{SIGNATURE_VERSION}={digest.hexdigest()}"


def _header(headers: Mapping[str, str], name: str) -> str | None:
    """A header by name, whatever the mapping's case handling (a plain dict, or HTTP headers)."""
    value = headers.get(name)
    if value is not None:
        return value
    lowered = name.lower()
    for key, item in headers.items():
        if key.lower() == lowered:
            return item
    return None


def verify(
    secret: str,
    headers: Mapping[str, str],
    body: bytes,
    tolerance_s: int = 300,
    *,
    now: float | None = None,
) -> bool:
    """Whether `body` with these headers is an authentic delivery signed with `secret` within
    `tolerance_s` seconds of `now` (default: the current time)."""
    raw_timestamp = _header(headers, TIMESTAMP_HEADER)
    raw_signature = _header(headers, SIGNATURE_HEADER)
    if raw_timestamp is None or raw_signature is None:
        return False
    try:
        timestamp = int(raw_timestamp.strip())
    except ValueError:
        return False
    current = time.time() if now is None else now
    if abs(current - timestamp) > tolerance_s:
        return False
    expected = sign(secret, timestamp, body)
    return hmac.compare_digest(expected.encode(), raw_signature.strip().encode())
