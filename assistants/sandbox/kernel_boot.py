"""Starts the IPython kernel inside a code_interpreter sandbox.

This file runs under the SANDBOX's Python (mounted read-only at /opt/sandbox/kernel_boot.py),
not the worker's: it may use only the standard library and what the sandbox venv has. It adds
these to a stock ipykernel:

- a lifeline: fd 0 is a pipe whose write end only the worker holds; when the worker dies (even
  by SIGKILL) the pipe reads EOF and the kernel exits, so no sandbox outlives its worker;
- output caps inside the kernel: every iopub message goes through `Session.send`, which is
  wrapped here to drop text past the per-execution budget, images past the count or size cap,
  and every MIME type but text/plain and image/png. The worker caps again (it cannot trust
  the kernel), but this keeps a `print('x' * 10**8)` from pushing 100 MB through the socket;
- matplotlib's prebuilt font cache, copied to the writable MPLCONFIGDIR (a read-only one
  makes matplotlib rebuild the cache on every first plot, ~1 s);
- an exit that names the CPU-time limit when it is reached (see `_cpu_limit_exit`).
"""

from __future__ import annotations

import importlib
import json
import os
import resource
import shutil
import signal
import sys
import threading
from typing import Any

_KEPT_MIME = ("text/plain", "image/png")


def _lifeline() -> None:
    try:
        while os.read(0, 4096):
            pass
    except OSError:
        pass
    os._exit(0)


class _Budget:
    """Per-execution output allowance, reset when a new request becomes the parent."""

    def __init__(self, max_text: int, max_images: int, max_image_b64: int) -> None:
        self.max_text = max_text
        self.max_images = max_images
        self.max_image_b64 = max_image_b64
        self.parent_id: object = None
        self.text = 0
        self.images = 0

    def reset_for(self, parent_id: object) -> None:
        if parent_id != self.parent_id:
            self.parent_id = parent_id
            self.text = 0
            self.images = 0

    def take_text(self, text: str) -> str:
        room = self.max_text - self.text
        if room <= 0:
            return ""
        text = text[:room]
        self.text += len(text)
        return text

    def filter_data(self, data: dict[str, Any]) -> dict[str, Any]:
        png = data.get("image/png")
        if isinstance(png, str):  # an image: never also its text ("<Figure size ...>")
            self.images += 1
            if len(png) > self.max_image_b64:
                return {"text/plain": "[image dropped: larger than the sandbox allows]"}
            return {"image/png": png} if self.images <= self.max_images else {}
        plain = data.get("text/plain")
        if isinstance(plain, str):
            cut = self.take_text(plain)
            return {"text/plain": cut} if cut else {}
        return {}


def _cap_outputs(session: Any, budget: _Budget) -> None:
    original_send = session.send

    def send(  # the signature of jupyter_client's Session.send
        stream: Any,
        msg_or_type: Any,
        content: Any = None,
        parent: Any = None,
        *args: Any,
        **kw: Any,
    ) -> Any:
        if isinstance(msg_or_type, dict):
            msg_type = msg_or_type.get("header", {}).get("msg_type")
            body = msg_or_type.get("content")
            parent_header = msg_or_type.get("parent_header") or {}
        else:
            msg_type = msg_or_type
            body = content
            parent_header = (parent or {}).get("header", parent or {})
        if isinstance(body, dict) and msg_type in (
            "stream",
            "execute_result",
            "display_data",
            "update_display_data",
            "error",
        ):
            budget.reset_for(parent_header.get("msg_id"))
            if msg_type == "stream":
                text = budget.take_text(str(body.get("text", "")))
                if not text:
                    return None
                body["text"] = text
            elif msg_type == "error":  # a traceback has its own allowance: never crowded out
                room, lines = budget.max_text, []
                for line in body.get("traceback", []):
                    lines.append(str(line)[: max(room, 0)])
                    room -= len(lines[-1])
                body["traceback"] = [line for line in lines if line]
            else:
                data = budget.filter_data(dict(body.get("data") or {}))
                if not data:
                    return None
                body["data"] = data
                body["metadata"] = {}
        return original_send(stream, msg_or_type, content, parent, *args, **kw)

    session.send = send


def _cpu_limit_exit() -> None:
    """nsjail sets RLIMIT_CPU's soft and hard limits equal, so the kernel would just get SIGKILL
    (and pid 1 ignores SIGXCPU without a handler). A soft limit one second earlier and a handler
    make the exit say why: status 128 + SIGXCPU, which the worker reports as the CPU limit."""
    _, hard = resource.getrlimit(resource.RLIMIT_CPU)
    if hard != resource.RLIM_INFINITY and hard > 2:
        resource.setrlimit(resource.RLIMIT_CPU, (hard - 1, hard))
        signal.signal(signal.SIGXCPU, lambda *_: os._exit(128 + signal.SIGXCPU))


def main() -> None:
    config = json.loads(sys.argv[1])
    threading.Thread(target=_lifeline, name="lifeline", daemon=True).start()
    _cpu_limit_exit()
    font_cache = config.get("font_cache")
    mpl_dir = os.environ.get("MPLCONFIGDIR")
    if font_cache and mpl_dir and os.path.isdir(font_cache):
        shutil.copytree(font_cache, mpl_dir, dirs_exist_ok=True)

    kernelapp = importlib.import_module("ipykernel.kernelapp")  # the sandbox venv's ipykernel
    app = kernelapp.IPKernelApp.instance()
    app.initialize(
        [
            "-f",
            config["connection_file"],
            "--HistoryManager.enabled=False",
            "--IPKernelApp.quiet=True",
        ]
    )
    # The worker's caps are the real ones; one more character (image) here lets it see the
    # overflow.
    budget = _Budget(
        max_text=int(config["max_text"]) + 1,
        max_images=int(config["max_images"]) + 1,
        max_image_b64=int(config["max_image_bytes"]) * 4 // 3 + 4,
    )
    _cap_outputs(app.session, budget)
    app.start()


if __name__ == "__main__":
    main()
