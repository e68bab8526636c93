"""Payload encryption (`assistants.codec`) and the codec server (`assistants.codec_server`), the
latter served by a real uvicorn on a loopback port and called over HTTP as the Temporal UI would."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import temporalio.converter
import uvicorn
from starlette.applications import Starlette
from temporalio.api.common.v1 import Payload

from assistants.codec import (
    ENCODING,
    KEY_ID_METADATA,
    EncryptionCodec,
    data_converter,
    generate_key,
)
from assistants.codec_server import CodecServerConfigError, create_codec_app, serve_codec_server
from assistants.config import Settings
from assistants.devserver import free_port
from assistants.payloads import PayloadConverter

ROOT = Path(__file__).resolve().parents[2]
KEY_A = base64.b64encode(b"A" * 32).decode()
KEY_B = base64.b64encode(b"B" * 32).decode()
RING_A = f"a:{KEY_A}"
RING_B = f"b:{KEY_B}"
SECRET = b"my credit card number is 4111-1111-1111-1111"
TOKEN = "codec-test-token"
UI_ORIGIN = "http://127.0.0.1:8233"


def plain(data: bytes = SECRET, encoding: bytes = b"json/plain") -> Payload:
    return Payload(metadata={"encoding": encoding}, data=data)


def b64(value: bytes) -> str:
    return base64.b64encode(value).decode()


def to_json(payload: Payload) -> dict[str, Any]:
    """A payload as the Temporal UI sends it: proto3 JSON, every bytes field base64."""
    return {
        "metadata": {key: b64(value) for key, value in payload.metadata.items()},
        "data": b64(payload.data),
    }


def from_json(body: dict[str, Any]) -> Payload:
    return Payload(
        metadata={key: base64.b64decode(value) for key, value in body["metadata"].items()},
        data=base64.b64decode(body.get("data", "")),
    )


# --- the codec ------------------------------------------------------------------------------


async def test_round_trip() -> None:
    codec = EncryptionCodec.from_setting(RING_A)
    originals = [plain(), plain(b"", b"binary/null"), plain(b'"x"' * 10_000)]
    encoded = await codec.encode(originals)
    assert len(encoded) == len(originals)
    assert await codec.decode(encoded) == originals


async def test_ciphertext_does_not_contain_the_plaintext() -> None:
    codec = EncryptionCodec.from_setting(RING_A)
    [encoded] = await codec.encode([plain()])
    assert SECRET not in encoded.data
    assert SECRET not in encoded.SerializeToString()
    assert b"json/plain" not in encoded.SerializeToString()
    # A random nonce per payload: the same plaintext never encrypts to the same bytes.
    [again] = await codec.encode([plain()])
    assert again.data != encoded.data
    assert again.data[:12] != encoded.data[:12]


async def test_metadata_names_the_encoding_and_the_key_id() -> None:
    codec = EncryptionCodec.from_setting(RING_A)
    [encoded] = await codec.encode([plain()])
    assert dict(encoded.metadata) == {"encoding": ENCODING, KEY_ID_METADATA: b"a"}
    assert ENCODING == b"binary/encrypted"
    assert KEY_ID_METADATA == "encryption-key-id"
    assert len(encoded.data) == 12 + len(plain().SerializeToString()) + 16  # nonce, GCM tag


async def test_rotation() -> None:
    old = EncryptionCodec.from_setting(RING_A)
    [from_old] = await old.encode([plain()])

    rotated = EncryptionCodec.from_setting(f"{RING_B},{RING_A}")
    assert rotated.encryption_key_id == "b"
    assert rotated.key_ids == ["b", "a"]
    assert await rotated.decode([from_old]) == [plain()]
    [from_rotated] = await rotated.encode([plain()])
    assert from_rotated.metadata[KEY_ID_METADATA] == b"b"
    assert await rotated.decode([from_rotated]) == [plain()]

    only_new = EncryptionCodec.from_setting(RING_B)
    assert await only_new.decode([from_rotated]) == [plain()]
    with pytest.raises(ValueError, match=r"key 'a', which is not in the key ring"):
        await only_new.decode([from_old])


async def test_unencrypted_payloads_pass_through() -> None:
    codec = EncryptionCodec.from_setting(RING_A)
    history = [plain(), plain(b"", b"binary/null"), Payload(data=b"no metadata")]
    assert await codec.decode(history) == history
    [encrypted] = await codec.encode([plain()])
    assert await codec.decode([history[0], encrypted]) == [plain(), plain()]


async def test_tampered_or_truncated_ciphertext_is_refused() -> None:
    codec = EncryptionCodec.from_setting(RING_A)
    [encoded] = await codec.encode([plain()])
    tampered = Payload()
    tampered.CopyFrom(encoded)
    tampered.data = encoded.data[:-1] + bytes([encoded.data[-1] ^ 1])
    with pytest.raises(ValueError, match="failed authentication"):
        await codec.decode([tampered])
    # Same id, different key: also an authentication failure, not garbage.
    other = EncryptionCodec.from_setting(f"a:{KEY_B}")
    with pytest.raises(ValueError, match="failed authentication"):
        await other.decode([encoded])
    truncated = Payload(metadata=dict(encoded.metadata), data=encoded.data[:20])
    with pytest.raises(ValueError, match="truncated"):
        await codec.decode([truncated])
    no_key_id = Payload(metadata={"encoding": ENCODING}, data=encoded.data)
    with pytest.raises(ValueError, match="encryption-key-id"):
        await codec.decode([no_key_id])


def test_setting_tolerates_spaces_and_a_trailing_comma() -> None:
    codec = EncryptionCodec.from_setting(f" {RING_B} , {RING_A} ,")
    assert codec.key_ids == ["b", "a"]
    assert KEY_A not in repr(codec)


SHORT_KEY = b64(b"s" * 16)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("", "no payload encryption keys"),
        (" , ", "no payload encryption keys"),
        (KEY_A, "entry #1 is not `key_id:base64key`"),
        (f"{RING_A},:{KEY_B}", "entry #2 is not `key_id:base64key`"),
        ("k1:not base64!", "key 'k1' is not valid base64"),
        (f"k1:{SHORT_KEY}", "key 'k1' is 16 bytes, AES-256 needs 32"),
        (f"k1:{KEY_A},k1:{KEY_B}", "key id 'k1' appears more than once"),
    ],
)
def test_malformed_settings_are_rejected(value: str, message: str) -> None:
    with pytest.raises(ValueError, match=message) as raised:
        EncryptionCodec.from_setting(value)
    for material in (KEY_A, KEY_B, SHORT_KEY, "not base64"):
        assert material not in str(raised.value)


def test_generate_key() -> None:
    key = generate_key()
    assert len(base64.b64decode(key, validate=True)) == 32
    assert generate_key() != key
    assert EncryptionCodec.from_setting(f"new:{key}").key_ids == ["new"]


@dataclass
class RunInput:
    thread_id: str
    message: str


async def test_data_converter() -> None:
    plain = data_converter("")
    assert plain.payload_codec is None and plain.payload_converter_class is PayloadConverter
    assert data_converter("  ").payload_codec is None
    converter = data_converter(RING_A)
    assert isinstance(converter.payload_codec, EncryptionCodec)
    value = RunInput("thread_1", SECRET.decode())
    [payload] = await converter.encode([value])
    assert payload.metadata["encoding"] == ENCODING
    assert SECRET not in payload.data
    assert await converter.decode([payload], [RunInput]) == [value]
    with pytest.raises(ValueError, match="not valid base64"):
        data_converter("k1:???")


# --- the codec server -----------------------------------------------------------------------


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield  # leave pytest's signal handlers alone


@contextlib.asynccontextmanager
async def serving(app: Starlette) -> AsyncIterator[str]:
    port = free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, access_log=False)
    server = _Server(config)
    task = asyncio.create_task(server.serve())
    try:
        while not server.started:
            if task.done():
                task.result()
                raise RuntimeError("the codec server did not start")
            await asyncio.sleep(0.01)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task


@pytest.fixture
async def codec_url() -> AsyncIterator[str]:
    app = create_codec_app(
        EncryptionCodec.from_setting(f"{RING_B},{RING_A}"), token=TOKEN, cors_origins=[UI_ORIGIN]
    )
    async with serving(app) as url:
        yield url


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=10) as client:
        yield client


AUTH = {"Authorization": f"Bearer {TOKEN}"}


async def test_encode_decode_round_trip_over_http(codec_url: str, http: httpx.AsyncClient) -> None:
    body = {"payloads": [to_json(plain()), to_json(plain(b"", b"binary/null"))]}
    encoded = await http.post(f"{codec_url}/encode", json=body, headers=AUTH)
    assert encoded.status_code == 200, encoded.text
    encrypted = [from_json(p) for p in encoded.json()["payloads"]]
    assert all(p.metadata["encoding"] == ENCODING for p in encrypted)
    assert all(p.metadata[KEY_ID_METADATA] == b"b" for p in encrypted)
    assert SECRET not in encrypted[0].data

    decoded = await http.post(f"{codec_url}/decode", json=encoded.json(), headers=AUTH)
    assert decoded.status_code == 200, decoded.text
    assert [from_json(p) for p in decoded.json()["payloads"]] == [
        plain(),
        plain(b"", b"binary/null"),
    ]
    # The CLI's `--codec-endpoint 'http://host:port/{namespace}'` form.
    namespaced = await http.post(f"{codec_url}/default/decode", json=encoded.json(), headers=AUTH)
    assert namespaced.json() == decoded.json()
    empty = await http.post(f"{codec_url}/decode", json={"payloads": []}, headers=AUTH)
    assert empty.json() == {"payloads": []}


async def test_token_is_required(codec_url: str, http: httpx.AsyncClient) -> None:
    body = {"payloads": [to_json(plain())]}
    for headers in (
        {},
        {"Authorization": "Bearer wrong-token"},
        {"Authorization": TOKEN},
        {"Authorization": f"Basic {TOKEN}"},
    ):
        response = await http.post(f"{codec_url}/decode", json=body, headers=headers)
        assert response.status_code == 401, headers
        assert "Bearer" in response.json()["error"]
        assert response.headers["www-authenticate"] == "Bearer"
    # The UI reads the 401 cross-origin too.
    response = await http.post(f"{codec_url}/encode", json=body, headers={"Origin": UI_ORIGIN})
    assert response.status_code == 401
    assert response.headers["access-control-allow-origin"] == UI_ORIGIN


async def test_cors_preflight(codec_url: str, http: httpx.AsyncClient) -> None:
    preflight = {
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization,content-type,x-namespace",
    }
    allowed = await http.options(f"{codec_url}/decode", headers={"Origin": UI_ORIGIN, **preflight})
    assert allowed.status_code == 200  # without the token
    assert allowed.headers["access-control-allow-origin"] == UI_ORIGIN
    assert allowed.headers["access-control-allow-credentials"] == "true"
    assert "POST" in allowed.headers["access-control-allow-methods"]
    allowed_headers = allowed.headers["access-control-allow-headers"].lower()
    for header in ("authorization", "content-type", "x-namespace"):
        assert header in allowed_headers

    denied = await http.options(
        f"{codec_url}/decode", headers={"Origin": "http://evil.example", **preflight}
    )
    assert "access-control-allow-origin" not in denied.headers
    response = await http.post(
        f"{codec_url}/encode",
        json={"payloads": [to_json(plain())]},
        headers={"Origin": "http://evil.example", **AUTH},
    )
    assert "access-control-allow-origin" not in response.headers

    response = await http.post(
        f"{codec_url}/encode",
        json={"payloads": [to_json(plain())]},
        headers={"Origin": UI_ORIGIN, "X-Namespace": "default", **AUTH},
    )
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == UI_ORIGIN


async def test_bad_requests_are_400(codec_url: str, http: httpx.AsyncClient) -> None:
    headers = {"Content-Type": "application/json", **AUTH}
    for content in (b"{not json", b"\xff\xfe", b'["payloads"]', b'{"payloads": 3}', b"{}"):
        response = await http.post(f"{codec_url}/decode", content=content, headers=headers)
        assert response.status_code == 400, content
        assert response.json()["error"]
    bad_base64 = {"payloads": [{"metadata": {"encoding": "!!!"}, "data": "x"}]}
    response = await http.post(f"{codec_url}/decode", json=bad_base64, headers=AUTH)
    assert response.status_code == 400
    assert "malformed" in response.json()["error"]

    unknown = await EncryptionCodec.from_setting(f"c:{generate_key()}").encode([plain()])
    response = await http.post(
        f"{codec_url}/decode", json={"payloads": [to_json(unknown[0])]}, headers=AUTH
    )
    assert response.status_code == 400
    assert "key 'c', which is not in the key ring" in response.json()["error"]


async def test_no_token_configured_means_open(http: httpx.AsyncClient) -> None:
    app = create_codec_app(EncryptionCodec.from_setting(RING_A), token=None, cors_origins=[])
    async with serving(app) as url:
        response = await http.post(f"{url}/encode", json={"payloads": [to_json(plain())]})
        assert response.status_code == 200


async def test_temporal_converter_payloads_decode_through_the_server(
    codec_url: str, http: httpx.AsyncClient
) -> None:
    """What the worker writes to the history, the UI shows in plain text via /decode."""
    value = RunInput("thread_1", SECRET.decode())
    old_writer = data_converter(RING_A)  # before the rotation; the server has both keys
    history = [
        *await data_converter(f"{RING_B},{RING_A}").encode([value]),
        *await old_writer.encode([value]),
        *await temporalio.converter.DataConverter.default.encode([value]),  # pre-encryption
    ]
    assert [p.metadata["encoding"] for p in history[:2]] == [ENCODING, ENCODING]
    assert all(SECRET not in p.data for p in history[:2])
    body = json.dumps({"payloads": [to_json(p) for p in history]})

    response = await http.post(
        f"{codec_url}/decode",
        content=body,
        headers={"Content-Type": "application/json", "X-Namespace": "default", **AUTH},
    )
    assert response.status_code == 200, response.text
    decoded = response.json()["payloads"]
    assert len(decoded) == 3
    for payload in decoded:
        assert base64.b64decode(payload["metadata"]["encoding"]) == b"json/plain"
        assert json.loads(base64.b64decode(payload["data"])) == {
            "thread_id": "thread_1",
            "message": SECRET.decode(),
        }


async def test_serve_codec_server_refuses_to_start_without_keys() -> None:
    with pytest.raises(CodecServerConfigError, match="PAYLOAD_ENCRYPTION_KEYS is not set"):
        await serve_codec_server(Settings(payload_encryption_keys=""))
    with pytest.raises(CodecServerConfigError, match="key 'k1' is not valid base64"):
        await serve_codec_server(Settings(payload_encryption_keys="k1:???"))


# --- the CLI --------------------------------------------------------------------------------


def cli(tmp_path: Path, *args: str, **env: str) -> subprocess.Popen[str]:
    environ = {
        **{k: v for k, v in os.environ.items() if not k.startswith("ASSISTANTS_")},
        "PYTHONPATH": str(ROOT),
        "ASSISTANTS_LOG_FORMAT": "console",
        **env,
    }
    return subprocess.Popen(
        [sys.executable, "-m", "assistants.cli", *args],
        cwd=tmp_path,  # no stray .env
        env=environ,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_cli_codec_key(tmp_path: Path) -> None:
    out, err = cli(tmp_path, "codec-key").communicate(timeout=60)
    assert len(base64.b64decode(out.strip(), validate=True)) == 32
    assert "ASSISTANTS_PAYLOAD_ENCRYPTION_KEYS" in err
    assert out.strip() not in err


def test_cli_codec_server_without_keys(tmp_path: Path) -> None:
    process = cli(tmp_path, "codec-server")
    _, err = process.communicate(timeout=60)
    assert process.returncode == 2
    assert "ASSISTANTS_PAYLOAD_ENCRYPTION_KEYS is not set" in err
    assert "Traceback" not in err


async def test_cli_codec_server_serves(tmp_path: Path, http: httpx.AsyncClient) -> None:
    port = free_port()
    process = cli(
        tmp_path,
        "codec-server",
        ASSISTANTS_PAYLOAD_ENCRYPTION_KEYS=f"{RING_B},{RING_A}",
        ASSISTANTS_CODEC_SERVER_PORT=str(port),
        ASSISTANTS_CODEC_SERVER_TOKEN=TOKEN,
        ASSISTANTS_CODEC_SERVER_CORS_ORIGINS=f" {UI_ORIGIN} , http://ui.example ",
    )
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, process.communicate()
            try:
                response = await http.post(f"{url}/decode", json={"payloads": []})
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "the codec server did not start"
                await asyncio.sleep(0.1)
        assert response.status_code == 401
        [from_a] = await EncryptionCodec.from_setting(RING_A).encode([plain()])
        response = await http.post(
            f"{url}/decode",
            json={"payloads": [to_json(from_a)]},
            headers={"Origin": "http://ui.example", **AUTH},
        )
        assert response.status_code == 200
        assert response.headers["access-control-allow-origin"] == "http://ui.example"
        assert [from_json(p) for p in response.json()["payloads"]] == [plain()]
    finally:
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=30)
    assert process.returncode == 0, err
    assert KEY_A not in err and KEY_B not in err
