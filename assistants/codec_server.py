"""The Temporal codec server: decrypts (and encrypts) payloads for the Temporal UI and CLI.

With payload encryption on (`assistants.codec`), the Temporal history holds only ciphertext.
The Temporal UI ("Codec Server endpoint" in its settings) and the `temporal` CLI
(`--codec-endpoint`, `--codec-auth "Bearer <token>"`) can show it in plain text by sending the
payloads to this server, which holds the keys. It implements the codec server protocol:

    POST /encode, POST /decode (also /{namespace}/encode, /{namespace}/decode)
    {"payloads": [{"metadata": {"encoding": "<base64>", ...}, "data": "<base64>"}, ...]}

answered with the same shape (proto3 JSON of `temporalio.api.common.v1.Payloads`: every bytes
field base64). Whoever can call it can read every conversation in the history, so it requires a
bearer token when one is configured, and only the configured origins (the UI) may call it from a
browser.
"""

from __future__ import annotations

import hmac
import json
from typing import Any

import structlog
import uvicorn
from google.protobuf import json_format
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from temporalio.api.common.v1 import Payload, Payloads

from assistants.codec import EncryptionCodec
from assistants.config import Settings

log = structlog.get_logger(__name__)

_LOOPBACK_HOSTS = {"127.0.0.1", "::1", "localhost"}


class CodecServerConfigError(ValueError):
    """The settings do not allow the codec server to start (no or malformed keys)."""


def _error(status: int, message: str) -> JSONResponse:
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return JSONResponse({"error": message}, status_code=status, headers=headers)


def _authorized(request: Request, token: str) -> bool:
    scheme, _, credentials = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer":
        return False
    return hmac.compare_digest(credentials.strip().encode(), token.encode())


async def _read_payloads(request: Request) -> list[Payload] | JSONResponse:
    try:
        body: Any = json.loads(await request.body())
    except (json.JSONDecodeError, UnicodeDecodeError):
        return _error(400, "the request body is not valid JSON")
    if not isinstance(body, dict) or not isinstance(body.get("payloads"), list):
        return _error(400, 'the request body must be {"payloads": [...]}')
    try:
        message = json_format.ParseDict(body, Payloads(), ignore_unknown_fields=True)
    except (json_format.ParseError, ValueError, TypeError) as exc:
        return _error(400, f"the payloads are malformed: {exc}")
    return list(message.payloads)


def create_codec_app(
    codec: EncryptionCodec, *, token: str | None, cors_origins: list[str]
) -> Starlette:
    """The codec server app. With `token`, requests need `Authorization: Bearer <token>`
    (CORS preflights do not: browsers never send credentials on them)."""

    async def handle(request: Request, *, encode: bool) -> JSONResponse:
        if token and not _authorized(request, token):
            return _error(401, "a valid `Authorization: Bearer <token>` header is required")
        payloads = await _read_payloads(request)
        if isinstance(payloads, JSONResponse):
            return payloads
        try:
            result = await (codec.encode(payloads) if encode else codec.decode(payloads))
        except ValueError as exc:  # unknown key id, failed authentication: no key material
            return _error(400, str(exc))
        return JSONResponse({"payloads": [json_format.MessageToDict(p) for p in result]})

    async def encode(request: Request) -> JSONResponse:
        return await handle(request, encode=True)

    async def decode(request: Request) -> JSONResponse:
        return await handle(request, encode=False)

    routes = [
        Route("/encode", encode, methods=["POST"]),
        Route("/decode", decode, methods=["POST"]),
        # The CLI's `--codec-endpoint 'http://host:port/{namespace}'` template.
        Route("/{namespace}/encode", encode, methods=["POST"]),
        Route("/{namespace}/decode", decode, methods=["POST"]),
    ]
    # CORS is the outermost layer: it answers preflights itself, before the token check.
    middleware = [
        Middleware(
            CORSMiddleware,
            allow_origins=cors_origins,
            allow_methods=["POST", "OPTIONS"],
            allow_headers=["Authorization", "Content-Type", "X-Namespace"],
            allow_credentials=True,
        )
    ]
    return Starlette(routes=routes, middleware=middleware)


def _codec_from_settings(settings: Settings) -> EncryptionCodec:
    if not settings.payload_encryption_keys.strip():
        raise CodecServerConfigError(
            "ASSISTANTS_PAYLOAD_ENCRYPTION_KEYS is not set: the codec server has no keys to "
            "decrypt with (make one with `durable-assistants codec-key`)"
        )
    try:
        return EncryptionCodec.from_setting(settings.payload_encryption_keys)
    except ValueError as exc:
        raise CodecServerConfigError(f"ASSISTANTS_PAYLOAD_ENCRYPTION_KEYS: {exc}") from None


def cors_origins(settings: Settings) -> list[str]:
    return [o.strip() for o in settings.codec_server_cors_origins.split(",") if o.strip()]


async def serve_codec_server(settings: Settings) -> None:
    """Run the codec server until shut down; `CodecServerConfigError` when it has no keys."""
    codec = _codec_from_settings(settings)
    origins = cors_origins(settings)
    token = settings.codec_server_token or None
    if token is None and settings.codec_server_host not in _LOOPBACK_HOSTS:
        log.warning(
            "codec server without ASSISTANTS_CODEC_SERVER_TOKEN on a non-loopback address: "
            "anyone who can reach it can decrypt every payload",
            host=settings.codec_server_host,
        )
    log.info(
        "codec server starting",
        url=f"http://{settings.codec_server_host}:{settings.codec_server_port}",
        key_ids=codec.key_ids,
        token_required=token is not None,
        cors_origins=origins,
    )
    config = uvicorn.Config(
        create_codec_app(codec, token=token, cors_origins=origins),
        host=settings.codec_server_host,
        port=settings.codec_server_port,
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=5,
    )
    await uvicorn.Server(config).serve()
