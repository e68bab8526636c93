"""AES-256-GCM encryption of Temporal payloads.

Every run is a Temporal workflow, so everything a run touches (user messages, instructions,
model output, tool arguments and results) is written to Temporal's event history as workflow
and activity inputs and outputs. Anyone who can read that history (the Temporal UI, the
`temporal` CLI, a database backup of the Temporal cluster) would otherwise read the
conversations in plain text. With `ASSISTANTS_PAYLOAD_ENCRYPTION_KEYS` set, the worker and the API
encrypt every payload before it leaves the process, so the history holds only ciphertext; the
codec server (`assistants.codec_server`) lets authorised operators decrypt it in the UI and CLI.

Keys form a ring, `key_id:base64key[,key_id:base64key...]`: the first key encrypts new payloads,
every key decrypts. To rotate, put a new key first and keep the old ones until no history that
needs them is retained. Payloads that are not encrypted (histories written before encryption was
turned on) pass through decoding unchanged.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import os
from collections.abc import Sequence

import temporalio.converter
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from temporalio.api.common.v1 import Payload

from assistants.payloads import PayloadConverter

ENCODING = b"binary/encrypted"
KEY_ID_METADATA = "encryption-key-id"
KEY_BYTES = 32
NONCE_BYTES = 12
_TAG_BYTES = 16


class EncryptionCodec(temporalio.converter.PayloadCodec):
    """Encrypts payloads with the first key of a key ring; decrypts with any key of it."""

    def __init__(self, keys: Sequence[tuple[str, bytes]]) -> None:
        if not keys:
            raise ValueError("the payload encryption key ring is empty")
        ciphers: dict[str, AESGCM] = {}
        for key_id, key in keys:
            if not key_id:
                raise ValueError("a payload encryption key has an empty key id")
            if key_id in ciphers:
                raise ValueError(f"payload encryption key id {key_id!r} appears more than once")
            if len(key) != KEY_BYTES:
                raise ValueError(
                    f"payload encryption key {key_id!r} is {len(key)} bytes, "
                    f"AES-256 needs {KEY_BYTES}"
                )
            ciphers[key_id] = AESGCM(key)
        self._ciphers = ciphers
        self._key_id = keys[0][0]

    @classmethod
    def from_setting(cls, value: str) -> EncryptionCodec:
        """Parse `key_id:base64key[,key_id:base64key...]` (`ASSISTANTS_PAYLOAD_ENCRYPTION_KEYS`).

        Error messages name the key id or the entry's position, never key material.
        """
        keys: list[tuple[str, bytes]] = []
        entries = [entry.strip() for entry in value.split(",")]
        for position, entry in enumerate(entries, start=1):
            if not entry:
                continue
            key_id, sep, encoded = entry.partition(":")
            key_id, encoded = key_id.strip(), encoded.strip()
            if not sep or not key_id:
                raise ValueError(
                    f"payload encryption key entry #{position} is not `key_id:base64key`"
                )
            try:
                key = base64.b64decode(encoded, validate=True)
            except (binascii.Error, ValueError):
                raise ValueError(f"payload encryption key {key_id!r} is not valid base64") from None
            keys.append((key_id, key))
        if not keys:
            raise ValueError("no payload encryption keys given: expected `key_id:base64key[,...]`")
        return cls(keys)

    @property
    def encryption_key_id(self) -> str:
        """The id of the key new payloads are encrypted with."""
        return self._key_id

    @property
    def key_ids(self) -> list[str]:
        """Every key id this codec decrypts, the encrypting one first."""
        return list(self._ciphers)

    def __repr__(self) -> str:
        return f"EncryptionCodec(key_ids={self.key_ids!r})"

    async def encode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return [self.encrypt(payload) for payload in payloads]

    async def decode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return [self.decrypt(payload) for payload in payloads]

    def encrypt(self, payload: Payload) -> Payload:
        nonce = os.urandom(NONCE_BYTES)
        ciphertext = self._ciphers[self._key_id].encrypt(nonce, payload.SerializeToString(), None)
        return Payload(
            metadata={"encoding": ENCODING, KEY_ID_METADATA: self._key_id.encode()},
            data=nonce + ciphertext,
        )

    def decrypt(self, payload: Payload) -> Payload:
        """Decrypt one payload; one that is not `binary/encrypted` is returned unchanged."""
        if payload.metadata.get("encoding") != ENCODING:
            return payload
        raw_key_id = payload.metadata.get(KEY_ID_METADATA)
        if raw_key_id is None:
            raise ValueError(f"encrypted payload has no {KEY_ID_METADATA!r} metadata")
        key_id = raw_key_id.decode("utf-8", errors="replace")
        cipher = self._ciphers.get(key_id)
        if cipher is None:
            raise ValueError(
                f"payload was encrypted with key {key_id!r}, which is not in the key ring "
                f"(known key ids: {', '.join(self._ciphers)})"
            )
        if len(payload.data) < NONCE_BYTES + _TAG_BYTES:
            raise ValueError(f"encrypted payload (key {key_id!r}) is truncated")
        nonce, ciphertext = payload.data[:NONCE_BYTES], payload.data[NONCE_BYTES:]
        try:
            plaintext = cipher.decrypt(nonce, ciphertext, None)
        except InvalidTag:
            raise ValueError(
                f"encrypted payload (key {key_id!r}) failed authentication: it is corrupted, "
                "or that key id now names a different key"
            ) from None
        decoded = Payload()
        decoded.ParseFromString(plaintext)
        return decoded


def data_converter(settings_value: str) -> temporalio.converter.DataConverter:
    """The Temporal data converter for `Settings.payload_encryption_keys`: the default one's
    JSON with faster dataclass decoding (`assistants.payloads`), and an `EncryptionCodec` when
    the value is not empty."""
    converter = dataclasses.replace(
        temporalio.converter.DataConverter.default, payload_converter_class=PayloadConverter
    )
    if not settings_value.strip():
        return converter
    return dataclasses.replace(
        converter, payload_codec=EncryptionCodec.from_setting(settings_value)
    )


def generate_key() -> str:
    """A new random AES-256 key, base64-encoded (the part after `key_id:` in the setting)."""
    return base64.b64encode(AESGCM.generate_key(bit_length=KEY_BYTES * 8)).decode("ascii")
