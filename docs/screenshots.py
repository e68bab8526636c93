"""Take the Temporal UI screenshots that the README shows: `docs/temporal-ui-runs.png` (the workflow
list, filtered by a search attribute) and `docs/temporal-ui-run.png` (one run's event history).

Why it exists: pictures of a UI go stale as the UI and the workflow change, and hand-made ones
cannot be checked. This script re-creates them from scratch, so they always show what an operator
really sees: it starts a Temporal dev server (with its UI) in a temporary directory, the scripted
model and the real `api` and `worker` processes (`tests/support/stack.py`), creates a few
representative runs through the `openai` SDK (completed, completed after a registered tool,
waiting in `requires_action`, cancelled, failed), then drives headless Chromium over the DevTools
protocol to load the UI pages, wait until the single-page app has rendered them, and capture PNGs.

Run it from the repository root after `make install`:

    .venv/bin/python -m docs.screenshots            # writes docs/temporal-ui-run{s,}.png
    .venv/bin/python -m docs.screenshots --keep     # also keeps the temp dir (logs, page text)

Needs Chromium (`apt-get install -y chromium`, or `--chromium PATH`). No extra Python packages:
the DevTools protocol is spoken over a minimal WebSocket client written with the standard library.
Every process it starts is stopped in `finally` blocks.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import secrets
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import time
import urllib.parse
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import openai
from temporalio.client import Client

from assistants.devserver import TemporalDevServer, free_port
from assistants.testing.scripted_model import Reply, ScriptedModel, ToolCallSpec
from tests.support.stack import Stack
from workflows.search_attributes import RUN_STATUS

warnings.filterwarnings("ignore", category=DeprecationWarning)  # "the Assistants API is deprecated"

REPO = Path(__file__).resolve().parent.parent

WIDTH, HEIGHT = 1600, 1000
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
    "--remote-debugging-port=0",
    f"--window-size={WIDTH},{HEIGHT}",
]
# The UI keeps its preferences in localStorage (JSON values), so they are set before the pages
# load: the workflow list's columns per namespace (what its "configure columns" drawer writes), with
# the custom search attributes next to the defaults, and the side navigation collapsed, for room.
LIST_COLUMNS = [
    {"label": "Status", "pinned": True},
    {"label": "Workflow ID", "pinned": True},
    {"label": "RunStatus", "pinned": False},
    {"label": "Model", "pinned": False},
    {"label": "ThreadId", "pinned": False},
    {"label": "Start", "pinned": False},
]
UI_PREFERENCES = {
    "namespace-workflow-table-columns": {"default": LIST_COLUMNS},
    "navOpen": False,
}
LIST_PAGE_HEIGHT = 600  # five rows
RUN_PAGE_HEIGHT = 1900  # the whole 31-event history of the registered-tool run
MIN_PNG_BYTES = 30_000  # a blank or spinner-only page is far smaller


def log(message: str) -> None:
    print(f"[screenshots] {message}", flush=True)


# --- the runs -------------------------------------------------------------------------------------

LOOKUP_ORDER: Any = {
    "type": "function",
    "function": {
        "name": "lookup_order",
        "description": "Look an order up in the caller's own system.",
        "parameters": {
            "type": "object",
            "properties": {"order_id": {"type": "string"}},
            "required": ["order_id"],
        },
    },
}
GET_WEATHER: Any = {"type": "function", "function": {"name": "get_weather"}}  # registered tool


@dataclass
class Runs:
    assistant_id: str
    run_ids: dict[str, str]  # what the run shows -> run id (= workflow id)
    statuses: dict[str, str]  # run id -> its final status (the `RunStatus` search attribute)


def wait_for_status(
    client: openai.OpenAI, thread_id: str, run_id: str, statuses: set[str], timeout: float = 30
) -> str:
    deadline = time.monotonic() + timeout
    while True:
        status = client.beta.threads.runs.retrieve(run_id, thread_id=thread_id).status
        if status in statuses:
            return status
        if time.monotonic() > deadline:
            raise TimeoutError(f"run {run_id} stayed {status}, wanted {statuses}")
        time.sleep(0.05)


def create_runs(client: openai.OpenAI, model: ScriptedModel) -> Runs:
    """One assistant, one thread per run, so a single `AssistantId` query lists them all."""
    assistant = client.beta.assistants.create(
        model="gpt-4o",
        name="Support agent",
        instructions="Help customers with their orders.",
        tools=[GET_WEATHER, LOOKUP_ORDER],
    )

    def thread(text: str) -> str:
        return client.beta.threads.create(messages=[{"role": "user", "content": text}]).id

    def run_to_end(thread_id: str) -> tuple[str, str]:
        run = client.beta.threads.runs.create_and_poll(
            thread_id=thread_id, assistant_id=assistant.id, poll_interval_ms=100
        )
        return run.id, run.status

    run_ids: dict[str, str] = {}
    expected: dict[str, str] = {}

    model.enqueue(Reply(text="Hello! How can I help you with your order today?"))
    run_ids["completed"], expected["completed"] = run_to_end(thread("Hi there"))

    model.enqueue(
        Reply(tool_calls=[ToolCallSpec("get_weather", '{"city": "Paris"}')]),
        Reply(text="It is 21 °C in Paris: your parcel will stay dry."),
    )
    run_ids["registered tool"], expected["registered tool"] = run_to_end(
        thread("Will it rain on my parcel in Paris?")
    )

    model.enqueue(Reply(tool_calls=[ToolCallSpec("lookup_order", '{"order_id": "A-1001"}')]))
    run_ids["requires_action"], expected["requires_action"] = run_to_end(
        thread("Where is order A-1001?")
    )

    model.enqueue(Reply(text="word " * 300, tokens_per_second=10))
    cancel_thread = thread("Tell me a very long story")
    run = client.beta.threads.runs.create(thread_id=cancel_thread, assistant_id=assistant.id)
    wait_for_status(client, cancel_thread, run.id, {"in_progress"})
    time.sleep(1.0)  # let some text stream before the cancel
    client.beta.threads.runs.cancel(run.id, thread_id=cancel_thread)
    run_ids["cancelled"] = run.id
    expected["cancelled"] = wait_for_status(
        client, cancel_thread, run.id, {"cancelled", "completed", "failed"}
    )

    model.enqueue(Reply(status=400, error_message="context too long"))
    run_ids["failed"], expected["failed"] = run_to_end(thread("Summarise everything"))

    wanted = {
        "completed": "completed",
        "registered tool": "completed",
        "requires_action": "requires_action",
        "cancelled": "cancelled",
        "failed": "failed",
    }
    if expected != wanted:
        raise RuntimeError(f"runs ended {expected}, wanted {wanted}")
    for what, run_id in run_ids.items():
        log(f"run {run_id}: {what}")
    statuses = {run_ids[what]: status for what, status in wanted.items()}
    return Runs(assistant_id=assistant.id, run_ids=run_ids, statuses=statuses)


async def temporal_run_id(address: str, runs: Runs, workflow_id: str) -> str:
    """Wait until visibility lists every run with its final `RunStatus`; return the Temporal run
    id of `workflow_id` (the UI's workflow page URL needs it)."""
    temporal = await Client.connect(address)
    deadline = time.monotonic() + 30
    while True:
        seen = {
            w.id: w.typed_search_attributes.get(RUN_STATUS)
            async for w in temporal.list_workflows(f'AssistantId = "{runs.assistant_id}"')
        }
        if seen == runs.statuses:
            break
        if time.monotonic() > deadline:
            raise TimeoutError(f"visibility shows {seen}, wanted {runs.statuses}")
        await asyncio.sleep(0.2)
    return (await temporal.get_workflow_handle(workflow_id).describe()).run_id


# --- headless Chromium over the DevTools protocol -------------------------------------------------


class WebSocket:
    """The client side of RFC 6455, just enough for the DevTools protocol (text frames)."""

    def __init__(self, url: str, timeout: float = 60.0) -> None:
        parsed = urllib.parse.urlsplit(url)
        self._sock = socket.create_connection((parsed.hostname, parsed.port or 80), timeout)
        key = base64.b64encode(secrets.token_bytes(16)).decode()
        request = (
            f"GET {parsed.path} HTTP/1.1\r\nHost: {parsed.netloc}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        self._sock.sendall(request.encode())
        self._buffer = b""
        while b"\r\n\r\n" not in self._buffer:
            self._buffer += self._recv_some()
        head, self._buffer = self._buffer.split(b"\r\n\r\n", 1)
        if b" 101 " not in head.split(b"\r\n", 1)[0]:
            raise ConnectionError(f"websocket handshake refused: {head.decode(errors='replace')}")

    def _recv_some(self) -> bytes:
        chunk = self._sock.recv(1 << 20)
        if not chunk:
            raise ConnectionError("websocket closed")
        return chunk

    def _read(self, n: int) -> bytes:
        while len(self._buffer) < n:
            self._buffer += self._recv_some()
        data, self._buffer = self._buffer[:n], self._buffer[n:]
        return data

    def _send_frame(self, opcode: int, payload: bytes) -> None:
        header = bytes([0x80 | opcode])
        n = len(payload)
        if n < 126:
            header += bytes([0x80 | n])
        elif n < 1 << 16:
            header += bytes([0x80 | 126]) + struct.pack("!H", n)
        else:
            header += bytes([0x80 | 127]) + struct.pack("!Q", n)
        mask = secrets.token_bytes(4)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        self._sock.sendall(header + mask + masked)

    def send(self, text: str) -> None:
        self._send_frame(0x1, text.encode())

    def receive(self) -> str:
        message = b""
        while True:
            first, second = self._read(2)
            opcode, n = first & 0x0F, second & 0x7F
            if n == 126:
                (n,) = struct.unpack("!H", self._read(2))
            elif n == 127:
                (n,) = struct.unpack("!Q", self._read(8))
            mask = self._read(4) if second & 0x80 else b""
            payload = self._read(n)
            if mask:
                payload = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
            if opcode == 0x8:
                raise ConnectionError("websocket closed by the browser")
            if opcode == 0x9:
                self._send_frame(0xA, payload)  # pong
                continue
            if opcode in (0x0, 0x1, 0x2):
                message += payload
                if first & 0x80:
                    return message.decode()

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._send_frame(0x8, b"")
        self._sock.close()


class Page:
    """One browser tab, driven with DevTools protocol commands."""

    def __init__(self, ws_url: str) -> None:
        self._ws = WebSocket(ws_url)
        self._next_id = 0

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        self._next_id += 1
        self._ws.send(json.dumps({"id": self._next_id, "method": method, "params": params}))
        while True:
            message = json.loads(self._ws.receive())
            if message.get("id") != self._next_id:
                continue  # an event: not needed
            if "error" in message:
                raise RuntimeError(f"{method}: {message['error']}")
            result: dict[str, Any] = message["result"]
            return result

    def evaluate(self, expression: str) -> Any:
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        return result["result"].get("value")

    def goto(self, url: str) -> None:
        self.call("Page.navigate", url=url)

    def wait_for(self, expression: str, what: str, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while not self.evaluate(expression):
            if time.monotonic() > deadline:
                text = self.evaluate("document.body ? document.body.innerText : ''")
                raise TimeoutError(f"the page did not show {what}; it shows:\n{text}")
            time.sleep(0.25)

    def resize(self, width: int, height: int) -> None:
        self.call(
            "Emulation.setDeviceMetricsOverride",
            width=width,
            height=height,
            deviceScaleFactor=1,
            mobile=False,
        )

    def text(self) -> str:
        return str(self.evaluate("document.body.innerText"))

    def screenshot(self, path: Path) -> int:
        data = base64.b64decode(self.call("Page.captureScreenshot", format="png")["data"])
        path.write_bytes(data)
        return len(data)

    def close(self) -> None:
        self._ws.close()


@contextlib.contextmanager
def chromium(binary: str, profile: Path, log_file: Path) -> Iterator[Page]:
    profile.mkdir(parents=True, exist_ok=True)
    with open(log_file, "ab") as out:
        process = subprocess.Popen(
            [binary, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "about:blank"],
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    page: Page | None = None
    try:
        port_file = profile / "DevToolsActivePort"
        deadline = time.monotonic() + 30
        while not (port_file.exists() and port_file.read_text().strip()):
            if process.poll() is not None:
                raise RuntimeError(f"chromium exited with {process.returncode}; see {log_file}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"chromium did not open its DevTools port; see {log_file}")
            time.sleep(0.1)
        port = int(port_file.read_text().split()[0])
        targets = httpx.get(f"http://127.0.0.1:{port}/json/list", timeout=10).json()
        target = next(t for t in targets if t["type"] == "page")
        page = Page(target["webSocketDebuggerUrl"])
        page.call("Page.enable")
        page.resize(WIDTH, HEIGHT)
        yield page
    finally:
        if page is not None:
            page.close()
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def js_has_all(texts: list[str]) -> str:
    """A JS expression: the page's visible text contains every one of `texts`."""
    return (
        "(() => { const t = document.body ? document.body.innerText : '';"
        f" return {json.dumps(texts)}.every(s => t.includes(s)); }})()"
    )


def shoot(
    page: Page,
    url: str,
    ready: list[str],
    path: Path,
    workdir: Path,
    *,
    height: int = HEIGHT,
    settle_s: float = 2.0,
) -> None:
    """Load `url` in a WIDTH x `height` viewport, wait until the page shows every string of
    `ready`, let it settle, capture."""
    page.resize(WIDTH, height)
    page.goto(url)
    page.wait_for(js_has_all(ready), f"all of {ready}")
    time.sleep(settle_s)  # fonts, icons and the last re-render
    (workdir / f"{path.stem}.txt").write_text(page.text())
    size = page.screenshot(path)
    if size < MIN_PNG_BYTES:
        raise RuntimeError(f"{path} is only {size} bytes: blank page?")
    log(f"wrote {path} ({size // 1024} KiB)")


def take_screenshots(
    page: Page, ui: str, runs: Runs, workflow_run_id: str, out: Path, workdir: Path
) -> None:
    # localStorage is per origin: set the preferences from a page of the UI's origin first.
    page.goto(f"{ui}/namespaces/default/workflows")
    page.wait_for("document.readyState === 'complete'", "a loaded document")
    for key, value in UI_PREFERENCES.items():
        page.evaluate(f"localStorage.setItem({json.dumps(key)}, {json.dumps(json.dumps(value))})")

    query = f'AssistantId="{runs.assistant_id}"'
    list_url = f"{ui}/namespaces/default/workflows?query={urllib.parse.quote(query, safe='')}"
    shoot(
        page,
        list_url,
        [*runs.run_ids.values(), "RunStatus", "requires_action", "cancelled", "failed"],
        out / "temporal-ui-runs.png",
        workdir,
        height=LIST_PAGE_HEIGHT,
    )

    tool_run = runs.run_ids["registered tool"]
    # `sort=ascending`: the history reads top-down, from the start of the run to its end.
    run_url = (
        f"{ui}/namespaces/default/workflows/{tool_run}/{workflow_run_id}/history?sort=ascending"
    )
    shoot(
        page,
        run_url,
        [tool_run, "call model gpt-4o", "run tool get_weather", "finish run: completed"],
        out / "temporal-ui-run.png",
        workdir,
        height=RUN_PAGE_HEIGHT,  # tall enough for the whole history of the run
    )


# --- main -----------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--out", type=Path, default=REPO / "docs", help="where the PNGs go")
    parser.add_argument("--chromium", default=shutil.which("chromium") or "/usr/bin/chromium")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (logs, page text)")
    args = parser.parse_args(argv)
    out: Path = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)

    started = time.monotonic()
    workdir = Path(tempfile.mkdtemp(prefix="assistants-screenshots-"))
    log(f"working in {workdir}")
    cleanups: list[Callable[[], None]] = []
    try:
        temporal = TemporalDevServer(
            port=free_port(),
            ui_port=free_port(),
            db_file=workdir / "temporal.db",
            log_file=workdir / "temporal.log",
        ).start()
        cleanups.append(temporal.stop)
        model = ScriptedModel().start()
        cleanups.append(model.stop)
        stack = Stack(
            name="screenshots",
            database_url=f"sqlite:///{workdir}/a.db",
            temporal_address=temporal.address,
            model_base_url=model.base_url,
            workdir=workdir / "stack",
        )
        cleanups.append(stack.stop)
        stack.start()
        log(f"stack up in {time.monotonic() - started:.1f} s; Temporal UI at {temporal.ui_url}")

        runs = create_runs(stack.client(), model)
        workflow_run_id = asyncio.run(
            temporal_run_id(temporal.address, runs, runs.run_ids["registered tool"])
        )
        log(f"runs created and visible at {time.monotonic() - started:.1f} s")

        assert temporal.ui_url is not None
        with chromium(
            args.chromium, workdir / "chromium-profile", workdir / "chromium.log"
        ) as page:
            take_screenshots(page, temporal.ui_url, runs, workflow_run_id, out, workdir)
        log(f"done in {time.monotonic() - started:.1f} s")
        return 0
    finally:
        for cleanup in reversed(cleanups):
            try:
                cleanup()
            except Exception as error:  # keep stopping the others
                log(f"cleanup failed: {error!r}")
        if args.keep:
            log(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
