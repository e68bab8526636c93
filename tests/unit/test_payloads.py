"""`assistants.payloads`: decoding with cached field types gives exactly what the SDK's default
converter gives, on every workflow input and local activity result of the recorded replay
histories (real payloads of every scenario), and fails where the default fails."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from temporalio.api.common.v1 import Payload
from temporalio.converter import DataConverter

from assistants.payloads import PayloadConverter
from tests.replay import BEFORE_PATCH_DIRS, HISTORIES_DIR
from workflows.shared import FinishResult, GenerateResult, RunInput, ToolPolicy

# The local activities whose results the run's workflow decodes, by activity type.
RESULT_TYPES: dict[str, type] = {"generate": GenerateResult, "finish_run": FinishResult}


def _histories() -> list[dict[str, Any]]:
    folders = [HISTORIES_DIR, *BEFORE_PATCH_DIRS.values()]
    paths = [p for folder in folders for p in sorted(folder.glob("*.json"))]
    return [json.loads(p.read_text(encoding="utf-8")) for p in paths]


def _payload(data: dict[str, Any]) -> Payload:
    payload = Payload()
    payload.metadata.update({k: _b64(v) for k, v in data.get("metadata", {}).items()})
    payload.data = _b64(data.get("data", ""))
    return payload


def _b64(text: str) -> bytes:
    return base64.b64decode(text)


def _samples() -> list[tuple[Payload, type]]:
    samples: list[tuple[Payload, type]] = []
    for history in _histories():
        started = history["events"][0]["workflowExecutionStartedEventAttributes"]
        samples += [(_payload(p), RunInput) for p in started["input"]["payloads"]]
        for event in history["events"]:
            marker = event.get("markerRecordedEventAttributes")
            if not marker or marker["markerName"] != "core_local_activity":
                continue
            [data] = marker["details"]["data"]["payloads"]
            kind = json.loads(_b64(data["data"]))["activity_type"]
            if kind in RESULT_TYPES and "result" in marker["details"]:
                samples += [
                    (_payload(p), RESULT_TYPES[kind])
                    for p in marker["details"]["result"]["payloads"]
                ]
    return samples


def test_decoding_matches_the_sdks_default_on_recorded_payloads() -> None:
    ours, default = PayloadConverter(), DataConverter.default.payload_converter
    samples = _samples()
    kinds = {hint for _, hint in samples}
    assert kinds == {RunInput, GenerateResult, FinishResult} and len(samples) > 40
    for payload, hint in samples:
        [expected] = default.from_payloads([payload], [hint])
        [got] = ours.from_payloads([payload], [hint])
        assert type(got) is hint and got == expected


def test_encoding_is_the_sdks_default() -> None:
    value = ToolPolicy(max_attempts=3)
    [ours] = PayloadConverter().to_payloads([value])
    [default] = DataConverter.default.payload_converter.to_payloads([value])
    assert ours == default


def test_a_bad_payload_fails_as_with_the_default() -> None:
    ours, default = PayloadConverter(), DataConverter.default.payload_converter
    [missing] = default.to_payloads([{"thread_id": "thread_1"}])  # required fields missing
    [wrong] = default.to_payloads([{"run_id": 1, "usage": "not a dict"}])
    for payload in (missing, wrong):
        with pytest.raises(Exception) as expected:
            default.from_payloads([payload], [GenerateResult])
        with pytest.raises(type(expected.value)):
            ours.from_payloads([payload], [GenerateResult])
