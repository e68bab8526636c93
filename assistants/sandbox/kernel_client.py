"""A minimal Jupyter messaging client for one kernel, over ZMQ `ipc://` sockets.

Why not jupyter_client's KernelClient: the worker must bound what a hostile kernel can make it
hold (`MAXMSGSIZE` on every socket, set before connecting), must watch the sandbox process
while it waits (a dead kernel is reported at once, not at a timeout), and needs no heartbeat
thread, stdin channel or kernel manager. Message signing and (de)serialisation still come from
jupyter_client's `Session`, so the wire format is the reference implementation's.

Unix sockets cross network namespaces, so the kernel can have no network at all; the socket
files live in a per-session directory bind-mounted into the sandbox.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Any

import zmq
import zmq.asyncio
from jupyter_client.session import Session

# Largest message accepted from a kernel: a capped PNG in base64 plus room. A bigger one (only a
# kernel that bypassed its own caps sends one) drops the connection, which ends in a timeout.
MAX_MESSAGE_BYTES = 32 * 1024 * 1024

_PORTS = {"shell_port": 1, "iopub_port": 2, "stdin_port": 3, "control_port": 4, "hb_port": 5}


@dataclass(frozen=True)
class Connection:
    """Where a kernel's sockets are: `ipc://<prefix>-<port>` on each side of the mount."""

    key: str

    def kernel_file(self, inside_prefix: str) -> dict[str, Any]:
        """The connection file the kernel reads (paths as the sandbox sees them)."""
        return {
            "transport": "ipc",
            "ip": inside_prefix,
            **_PORTS,
            "key": self.key,
            "signature_scheme": "hmac-sha256",
            "kernel_name": "python3",
        }

    @staticmethod
    def new() -> Connection:
        return Connection(key=secrets.token_hex(32))


class KernelGone(Exception):
    """The kernel process ended while we were waiting on it."""


class KernelClient:
    """Shell, control and iopub sockets to one kernel. One coroutine at a time uses it."""

    def __init__(self, connection: Connection, outside_prefix: str) -> None:
        self._session = Session(
            key=connection.key.encode(), signature_scheme="hmac-sha256", username="worker"
        )
        self._context = zmq.asyncio.Context()
        self.shell = self._socket(zmq.DEALER, outside_prefix, _PORTS["shell_port"])
        self.control = self._socket(zmq.DEALER, outside_prefix, _PORTS["control_port"])
        self.iopub = self._socket(zmq.SUB, outside_prefix, _PORTS["iopub_port"])

    def _socket(self, kind: int, prefix: str, port: int) -> zmq.asyncio.Socket:
        sock = self._context.socket(kind)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.MAXMSGSIZE, MAX_MESSAGE_BYTES)
        if kind == zmq.SUB:
            sock.setsockopt(zmq.SUBSCRIBE, b"")
        sock.connect(f"ipc://{prefix}-{port}")
        return sock

    async def send(self, sock: zmq.asyncio.Socket, msg_type: str, content: dict[str, Any]) -> str:
        msg = self._session.msg(msg_type, content)
        await sock.send_multipart(self._session.serialize(msg))
        return str(msg["header"]["msg_id"])

    async def recv(self, sock: zmq.asyncio.Socket) -> dict[str, Any]:
        """The next validly signed message on `sock` (others are skipped)."""
        while True:
            frames = await sock.recv_multipart()
            try:
                _, parts = self._session.feed_identities(frames, copy=True)
                msg: dict[str, Any] = self._session.deserialize(parts, content=True, copy=True)
            except (ValueError, KeyError, TypeError):
                continue  # not signed with our key, or malformed: ignore it
            return msg

    async def wait_ready(self, timeout_s: float, gone: Awaitable[object]) -> None:
        """Until the kernel answers on shell AND its iopub reaches us (else the first outputs
        of the first execution could be lost), or `KernelGone` / `TimeoutError`.

        A `kernel_info_request` goes out every 50 ms until one is answered (ZMQ queues them
        until the kernel binds);
        iopub counts as connected at the kernel's `iopub_welcome` (ipykernel >= 7 sends one per
        subscription) or at any iopub message caused by one of those requests."""
        sent: set[str] = set()

        async def shell_ready() -> None:
            # One request at a time: a reply is awaited for 50 ms before the next goes out.
            while True:
                sent.add(await self.send(self.shell, "kernel_info_request", {}))
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(0.05):
                        while True:
                            reply = await self.recv(self.shell)
                            if reply["header"]["msg_type"] == "kernel_info_reply":
                                return

        async def iopub_ready() -> None:
            while True:
                msg = await self.recv(self.iopub)
                if msg["header"]["msg_type"] == "iopub_welcome":
                    return
                if msg.get("parent_header", {}).get("msg_id") in sent:
                    return

        tasks: list[asyncio.Future[Any]] = [
            asyncio.ensure_future(gone),
            asyncio.ensure_future(asyncio.gather(shell_ready(), iopub_ready())),
        ]
        try:
            async with asyncio.timeout(timeout_s):
                done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            if tasks[1] not in done:
                raise KernelGone()
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def interrupt(self) -> None:
        await self.send(self.control, "interrupt_request", {})

    def close(self) -> None:
        for sock in (self.shell, self.control, self.iopub):
            sock.close(linger=0)
        self._context.term()
