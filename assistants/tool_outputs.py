"""OpenAI's rules for `submit_tool_outputs`, in one place for both sides that enforce them.

The API checks a submission against the store before staging it; the run workflow's update
validator checks it again against its own state, which is what decides when a submission races
the run's expiry. Pure and deterministic, so workflow code may import it.
"""

from __future__ import annotations


def submission_problem(
    status: str, pending: list[str], given: list[str]
) -> tuple[str, str | None] | None:
    """What is wrong with answering `pending` calls with `given` ids while the run is `status`,
    as `(message, param)` in OpenAI's words, or None when the submission is acceptable: the run
    must wait for outputs, and every pending call must be answered exactly once."""
    if status != "requires_action":
        return f'Runs in status "{status}" do not accept tool outputs.', None
    seen: set[str] = set()
    for call_id in given:
        if call_id in seen:
            return f"Duplicate tool output for call_id '{call_id}'.", "tool_outputs"
        seen.add(call_id)
    if seen != set(pending):
        return f"Expected tool outputs for call_ids {sorted(pending)}, got {given}.", "tool_outputs"
    return None
