"""A real S3-speaking server on loopback for the tests: moto's standalone server
(`python -m moto.server`, a Werkzeug HTTP server implementing the S3 REST API) in a subprocess.

The blob storage's S3 backend talks to it over HTTP with its real client (aiobotocore), exactly as
it would to MinIO or AWS: nothing is mocked inside the process under test.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType

import httpx

from assistants.devserver import free_port

ACCESS_KEY_ID = "test-access-key"
SECRET_ACCESS_KEY = "test-secret-key"
REGION = "us-east-1"


class S3Server:
    def __init__(self, log_file: Path) -> None:
        self.port = free_port()
        self._log_file = log_file
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def endpoint_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout_s: float = 30.0) -> S3Server:
        with open(self._log_file, "ab") as log:
            self._process = subprocess.Popen(
                [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"moto server exited; see {self._log_file}")
            with contextlib.suppress(httpx.HTTPError):
                httpx.get(f"{self.endpoint_url}/moto-api/", timeout=1)
                return self
            time.sleep(0.1)
        raise TimeoutError("moto server did not start")

    def create_bucket(self, name: str) -> None:
        """Create a bucket with a plain S3 REST call (`PUT /<bucket>`)."""
        response = httpx.put(f"{self.endpoint_url}/{name}", timeout=10)
        response.raise_for_status()

    def object_keys(self, bucket: str, prefix: str = "") -> list[str]:
        """The keys in a bucket (S3 `ListObjectsV2`), to check what is really stored."""
        response = httpx.get(
            f"{self.endpoint_url}/{bucket}",
            params={"list-type": "2", "prefix": prefix},
            timeout=10,
        )
        response.raise_for_status()
        import xml.etree.ElementTree as ElementTree

        root = ElementTree.fromstring(response.content)
        return [el.text or "" for el in root.iter() if el.tag.endswith("}Key") or el.tag == "Key"]

    def multipart_uploads(self, bucket: str) -> list[str]:
        """Upload ids of multipart uploads still open (S3 `ListMultipartUploads`)."""
        response = httpx.get(f"{self.endpoint_url}/{bucket}", params={"uploads": ""}, timeout=10)
        response.raise_for_status()
        import xml.etree.ElementTree as ElementTree

        root = ElementTree.fromstring(response.content)
        return [el.text or "" for el in root.iter() if el.tag.endswith("UploadId")]

    def stop(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        self._process = None

    def __enter__(self) -> S3Server:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
