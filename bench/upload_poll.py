"""What `vector_stores.files.upload_and_poll` waits for a small file, with the SDK's defaults,
against the moment the file was indexed as a tight poller sees it, measured in the same run.

Starts `durable-assistants dev` (SQLite, the offline embedding model) and, alternating:

- **baseline**: `files.create`, `vector_stores.files.create`, then `vector_stores.files.retrieve`
  every 5 ms (plain reads, answered at once) until the file is `completed`;
- **SDK**: `vector_stores.files.upload_and_poll` as an application calls it (no
  `poll_interval_ms`): its reads carry `X-Stainless-Poll-Helper`, and it sleeps
  `openai-poll-after-ms` (100 ms) between them while the file is in progress, unless the
  server holds the read until the ingestion ends (`ASSISTANTS_POLL_HOLD_MS`).

`added_p50_ms` is the difference of the p50s: what the poller's waiting adds to the
ingestion. Results go to `bench/results/upload_poll.json`.

    .venv/bin/python -m bench.upload_poll [--runs 40]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import openai

from bench.harness import DevProcesses, pct, summary, write_result

TEXT = (
    b"Emperor penguins breed in the Antarctic winter. The male keeps the egg warm on his feet "
    b"for about two months while the female feeds at sea."
)


def tight(client: openai.OpenAI, store_id: str, index: int) -> float:
    started = time.perf_counter()
    uploaded = client.files.create(file=(f"tight{index}.txt", TEXT), purpose="assistants")
    attached = client.vector_stores.files.create(vector_store_id=store_id, file_id=uploaded.id)
    while attached.status == "in_progress":
        time.sleep(0.005)
        attached = client.vector_stores.files.retrieve(uploaded.id, vector_store_id=store_id)
    assert attached.status == "completed", attached.last_error
    return time.perf_counter() - started


def sdk(client: openai.OpenAI, store_id: str, index: int) -> float:
    started = time.perf_counter()
    done = client.vector_stores.files.upload_and_poll(
        vector_store_id=store_id, file=(f"sdk{index}.txt", TEXT)
    )
    assert done.status == "completed", done.last_error
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=40)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-upload-poll-") as tmp:
        dev = DevProcesses(Path(tmp))
        dev.start()
        try:
            client = openai.OpenAI(base_url=dev.api_url, api_key=dev.key, max_retries=0)
            store = client.vector_stores.create(name="bench")
            for index in range(3):  # warm up: the embedding model loads, connections
                tight(client, store.id, -index - 1)
                sdk(client, store.id, -index - 1)
            base: list[float] = []
            helper: list[float] = []
            for index in range(args.runs):  # alternating, so drift hits both alike
                base.append(tight(client, store.id, index))
                helper.append(sdk(client, store.id, index))
        finally:
            dev.stop()
    result: dict[str, Any] = {
        "runs": args.runs,
        "baseline_polled_every_5ms": summary(base),
        "sdk_upload_and_poll": summary(helper),
        "added_p50_ms": round((pct(helper, 0.5) - pct(base, 0.5)) * 1000, 1),
    }
    write_result("upload_poll.json", result)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
