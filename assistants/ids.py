"""Object ids in OpenAI's style (`asst_…`, `thread_…`, `msg_…`, `run_…`, `step_…`).

Ids made inside a workflow must be deterministic, so workflows derive them from `workflow.uuid4()`
through `from_uuid_hex` rather than calling `new_id`.
"""

from __future__ import annotations

import secrets
import string

_ALPHABET = string.ascii_letters + string.digits
_LENGTH = 24


def new_id(prefix: str) -> str:
    return f"{prefix}_" + "".join(secrets.choice(_ALPHABET) for _ in range(_LENGTH))


def from_uuid_hex(prefix: str, hex_value: str) -> str:
    """Turn a (workflow-generated) uuid into an id of the usual shape, deterministically."""
    number = int(hex_value, 16)
    chars = []
    for _ in range(_LENGTH):
        number, rem = divmod(number, len(_ALPHABET))
        chars.append(_ALPHABET[rem])
    return f"{prefix}_" + "".join(chars)
