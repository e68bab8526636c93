"""The system under test as real processes: `durable-assistants api` and `durable-assistants
worker`, each a subprocess configured only through `ASSISTANTS_*` variables, against the real
Temporal dev server, a real database and the scripted model server.

Tests drive it with the real `openai` SDK; crash tests SIGKILL and restart its processes. A
stack may run more API replicas (`start_api(port=...)`) and `durable-assistants sandbox-worker`
hosts (`start_sandbox_worker`), as a production deployment does.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import openai

from assistants.devserver import free_port

FAST_SETTINGS = {
    "ASSISTANTS_MODEL_RETRY_INITIAL_INTERVAL_S": "0.2",
    "ASSISTANTS_MODEL_RETRY_MAX_INTERVAL_S": "1",
    "ASSISTANTS_MODEL_HEARTBEAT_TIMEOUT_S": "2",
    "ASSISTANTS_POLL_AFTER_MS": "50",
    "ASSISTANTS_REQUEUE_AFTER_S": "2",
    "ASSISTANTS_LOG_FORMAT": "json",
    "ASSISTANTS_TOOL_MODULES": "tests.support.tools",
    # Several workers share this host: no health server unless a test gives one its own port.
    "ASSISTANTS_WORKER_HEALTH_PORT": "0",
    # Production workers run workflow code unsandboxed (for speed); the tests run it in
    # Temporal's sandbox, so a non-deterministic call on any path they exercise fails here.
    "ASSISTANTS_WORKFLOW_SANDBOX": "true",
}


class Stack:
    def __init__(
        self,
        *,
        name: str,
        database_url: str,
        temporal_address: str,
        model_base_url: str,
        workdir: Path,
        overrides: dict[str, str] | None = None,
    ) -> None:
        self.name = name
        self.database_url = database_url
        self.temporal_address = temporal_address
        self.model_base_url = model_base_url
        self.workdir = workdir
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.api_port = free_port()
        self.task_queue = f"assistants-{name}-{uuid.uuid4().hex[:8]}"
        self.api_key = f"sk-test-{name}-{uuid.uuid4().hex[:8]}"
        self.overrides = overrides or {}
        self.api: subprocess.Popen[bytes] | None = None
        self.replicas: list[subprocess.Popen[bytes]] = []  # API processes on other ports
        self.workers: list[subprocess.Popen[bytes]] = []

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}/v1"

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("ASSISTANTS_")}
        env.update(FAST_SETTINGS)
        env.update(
            {
                "ASSISTANTS_DATABASE_URL": self.database_url,
                "ASSISTANTS_TEMPORAL_ADDRESS": self.temporal_address,
                "ASSISTANTS_TASK_QUEUE": self.task_queue,
                "ASSISTANTS_MODEL_BASE_URL": self.model_base_url,
                "ASSISTANTS_MODEL_API_KEY": "scripted",
                "ASSISTANTS_API_HOST": "127.0.0.1",
                "ASSISTANTS_API_PORT": str(self.api_port),
                "ASSISTANTS_BOOTSTRAP_API_KEY": self.api_key,
                "ASSISTANTS_DATA_DIR": str(self.workdir / "data"),
            }
        )
        env.update(self.overrides)
        return env

    def _spawn(
        self, command: str, log_name: str, env: dict[str, str] | None = None
    ) -> subprocess.Popen[bytes]:
        with open(self.workdir / log_name, "ab") as log:  # the child keeps its own handle
            return subprocess.Popen(
                [sys.executable, "-m", "assistants.cli", command],
                env={**self.env(), **(env or {})},
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def cli(self, *args: str) -> str:
        result = subprocess.run(
            [sys.executable, "-m", "assistants.cli", *args],
            env=self.env(),
            capture_output=True,
            text=True,
            check=True,
            timeout=120,
        )
        return result.stdout

    def start_api(
        self, timeout_s: float = 60.0, *, port: int | None = None
    ) -> subprocess.Popen[bytes]:
        """Start the API (or, on another `port`, one more replica of it: same database, Temporal
        and task queue) and return once it answers `/healthz`."""
        port = port or self.api_port
        log_name = "api.log" if port == self.api_port else f"api-{port}.log"
        api = self._spawn("api", log_name, {"ASSISTANTS_API_PORT": str(port)})
        if port == self.api_port:
            self.api = api
        else:
            self.replicas.append(api)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if api.poll() is not None:
                raise RuntimeError(f"api exited; see {self.workdir / log_name}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).is_success:
                    return api
            time.sleep(0.1)
        raise TimeoutError("api did not start")

    def start_worker(self, timeout_s: float = 60.0) -> subprocess.Popen[bytes]:
        """Start a worker and return once it polls its task queue."""
        log = self.workdir / "worker.log"
        offset = log.stat().st_size if log.exists() else 0
        worker = self._spawn("worker", "worker.log")
        self.workers.append(worker)
        deadline = time.monotonic() + timeout_s
        while b"worker ready" not in log.read_bytes()[offset:]:
            if worker.poll() is not None:
                raise RuntimeError(f"worker exited; see {log}")
            if time.monotonic() > deadline:
                raise TimeoutError("worker did not start")
            time.sleep(0.05)
        return worker

    def start_sandbox_worker(self, timeout_s: float = 60.0) -> subprocess.Popen[bytes]:
        """Start a `sandbox-worker` (a code_interpreter host alone; counted among `workers`) and
        return once it polls its task queues."""
        log = self.workdir / "sandbox.log"
        offset = log.stat().st_size if log.exists() else 0
        host = self._spawn("sandbox-worker", "sandbox.log")
        self.workers.append(host)
        deadline = time.monotonic() + timeout_s
        while b"sandbox host ready" not in log.read_bytes()[offset:]:
            if host.poll() is not None:
                raise RuntimeError(f"sandbox-worker exited; see {log}")
            if time.monotonic() > deadline:
                raise TimeoutError("sandbox-worker did not start")
            time.sleep(0.05)
        return host

    def start(self) -> Stack:
        self.start_api()
        self.start_worker()
        return self

    @staticmethod
    def _kill(process: subprocess.Popen[bytes] | None, sig: int = signal.SIGKILL) -> None:
        if process is None or process.poll() is not None:
            return
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()

    def kill_workers(self) -> None:
        for worker in self.workers:
            self._kill(worker)
        self.workers.clear()

    def stop_workers(self) -> None:
        """SIGTERM the workers, as a deploy or a scale-down does, and wait until they exit."""
        for worker in self.workers:
            self._kill(worker, signal.SIGTERM)
        self.workers.clear()

    def kill_api(self) -> None:
        self._kill(self.api)
        self.api = None

    def kill(self, process: subprocess.Popen[bytes]) -> None:
        """SIGKILL one process of the stack (an API replica or a worker), and forget it."""
        self._kill(process)
        for group in (self.replicas, self.workers):
            if process in group:
                group.remove(process)
        if process is self.api:
            self.api = None

    def stop(self) -> None:
        for worker in self.workers:
            self._kill(worker, signal.SIGTERM)
        self.workers.clear()
        for api in [self.api, *self.replicas]:
            self._kill(api, signal.SIGTERM)
        self.api = None
        self.replicas.clear()

    # --- clients -----------------------------------------------------------------------------

    def client(
        self, api_key: str | None = None, *, port: int | None = None, **kwargs: Any
    ) -> openai.OpenAI:
        """An SDK client of the API (or of the replica on `port`)."""
        return openai.OpenAI(
            base_url=f"http://127.0.0.1:{port}/v1" if port else self.base_url,
            api_key=api_key or self.api_key,
            max_retries=kwargs.pop("max_retries", 0),
            _strict_response_validation=True,
            **kwargs,
        )

    def async_client(self, api_key: str | None = None) -> openai.AsyncOpenAI:
        return openai.AsyncOpenAI(
            base_url=self.base_url,
            api_key=api_key or self.api_key,
            max_retries=0,
            _strict_response_validation=True,
        )

    def http(self, api_key: str | None = None) -> httpx.Client:
        return httpx.Client(
            base_url=self.base_url,
            headers={
                "Authorization": f"Bearer {api_key or self.api_key}",
                "OpenAI-Beta": "assistants=v2",
            },
            timeout=30,
        )
