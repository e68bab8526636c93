"""Ingestion end to end: upload → `completed` through the API, Temporal and the worker, with the
offline embedding model, against a baseline measured in the same run.

Starts `durable-assistants dev` (embedded Temporal dev server, worker and API, SQLite store) in a
fresh data dir. Then:

1. baseline: the library's own parse → chunk → embed of the same 100-page PDF, in this process
   (what one ingestion must compute anyway; `bench/ingest_parse.py` breaks it down further);
2. one 100-page PDF, upload → `completed` (the SDK's `files.create` then
   `vector_stores.files.create_and_poll`, polled every 20 ms), repeated;
3. where that time goes, read off the ingestion workflow's Temporal history;
4. throughput: a batch of 20 ten-page PDFs (`file_batches.upload_and_poll`), in chunks/s and
   pages/s.

    .venv/bin/python -m bench.ingest [--pages 100] [--repeat 3] [--batch 20]

Prints a table and writes bench/results/ingest.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import openai
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client

from assistants.retrieval import LocalEmbedder, chunk_document, parse_document
from bench.harness import RESULTS, DevProcesses
from tests.support.documents import filler_pages, make_pdf
from workflows.ingestion_shared import ingest_workflow_id


def baseline(data: bytes, repeat: int) -> tuple[float, int]:
    """Median seconds of parse → chunk → embed in-process, and the chunk count."""
    embedder = LocalEmbedder()
    embedder.embed_sync(["warm up"])  # the model loads once per process, as in the worker
    times, chunks = [], 0
    for _ in range(repeat):
        started = time.perf_counter()
        doc = parse_document(data, "report.pdf", "application/pdf")
        pieces = chunk_document(doc)
        asyncio.run(embedder.embed([c.text for c in pieces]))
        times.append(time.perf_counter() - started)
        chunks = len(pieces)
    return statistics.median(times), chunks


def one_file(client: openai.OpenAI, data: bytes) -> dict[str, Any]:
    store = client.vector_stores.create(name="bench")
    started = time.perf_counter()
    uploaded = client.files.create(file=("report.pdf", data), purpose="assistants")
    attached_at = time.perf_counter()
    done = client.vector_stores.files.create_and_poll(
        vector_store_id=store.id, file_id=uploaded.id, poll_interval_ms=20
    )
    finished = time.perf_counter()
    assert done.status == "completed", done.last_error
    return {
        "store": store.id,
        "file": uploaded.id,
        "upload_s": attached_at - started,
        "attach_to_completed_s": finished - attached_at,
        "total_s": finished - started,
    }


async def breakdown(temporal: str, workflow_ids: list[str]) -> dict[str, float]:
    """Mean milliseconds per step of the ingestion workflows, from their histories."""
    client = await Client.connect(temporal)
    parts: dict[str, list[float]] = {}

    def add(name: str, seconds: float) -> None:
        parts.setdefault(name, []).append(seconds * 1000)

    for workflow_id in workflow_ids:
        history = await client.get_workflow_handle(workflow_id).fetch_history()
        events = history.events
        start = events[0].event_time.ToDatetime()
        add(
            "workflow: start → completed",
            (events[-1].event_time.ToDatetime() - start).total_seconds(),
        )
        scheduled: dict[int, Any] = {}
        names: dict[int, str] = {}
        for event in events:
            t = event.event_time.ToDatetime()
            if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
                scheduled[event.event_id] = t
                names[event.event_id] = (
                    event.activity_task_scheduled_event_attributes.activity_type.name
                )
            elif event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED:
                sid = event.activity_task_started_event_attributes.scheduled_event_id
                add("activity dispatch (schedule → start)", (t - scheduled[sid]).total_seconds())
            elif event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED:
                sid = event.activity_task_completed_event_attributes.scheduled_event_id
                add(f"activity {names[sid]}", (t - scheduled[sid]).total_seconds())
            elif event.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED:
                began = event.workflow_task_completed_event_attributes.started_event_id
                started_at = next(e for e in events if e.event_id == began).event_time
                add(
                    "workflow tasks (incl. commit local activity)",
                    (t - started_at.ToDatetime()).total_seconds(),
                )
    return {name: round(statistics.mean(values), 1) for name, values in parts.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pages", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--batch", type=int, default=20)
    args = parser.parse_args()

    # ~450 words a page, as bench/ingest_parse.py: ~1.5 chunks of 800 tokens per page.
    data = make_pdf(filler_pages(args.pages, paragraphs=5, sentences=7))
    base_s, chunks = baseline(data, args.repeat)

    with tempfile.TemporaryDirectory(prefix="bench-ingest-") as tmp:
        dev = DevProcesses(Path(tmp))
        dev.start()
        try:
            client = openai.OpenAI(base_url=dev.api_url, api_key=dev.key, max_retries=0)
            one_file(client, make_pdf(filler_pages(2, seed=99)))  # warm-up: model load etc.
            runs = [one_file(client, data) for _ in range(args.repeat)]
            where = asyncio.run(
                breakdown(
                    dev.temporal_address,
                    [ingest_workflow_id(r["store"], r["file"], 1) for r in runs],
                )
            )
            small = [
                (f"doc{i}.pdf", make_pdf(filler_pages(10, paragraphs=5, sentences=7, seed=i)))
                for i in range(args.batch)
            ]
            small_chunks = sum(
                len(chunk_document(parse_document(d, n, "application/pdf"))) for n, d in small
            )
            store = client.vector_stores.create(name="bench-batch")
            started = time.perf_counter()
            batch = client.vector_stores.file_batches.upload_and_poll(
                vector_store_id=store.id, files=small, poll_interval_ms=20
            )
            batch_s = time.perf_counter() - started
            assert batch.file_counts.completed == args.batch, batch.file_counts
        finally:
            dev.stop()

    total = statistics.median(r["total_s"] for r in runs)
    attach = statistics.median(r["attach_to_completed_s"] for r in runs)
    upload = statistics.median(r["upload_s"] for r in runs)
    result: dict[str, Any] = {
        "pages": args.pages,
        "pdf_bytes": len(data),
        "chunks": chunks,
        "repeat": args.repeat,
        "baseline_parse_chunk_embed_s": round(base_s, 3),
        "one_pdf": {
            "upload_s": round(upload, 3),
            "attach_to_completed_s": round(attach, 3),
            "upload_to_completed_s": round(total, 3),
            "pages_per_s": round(args.pages / total, 1),
            "chunks_per_s": round(chunks / total, 1),
            "overhead_over_baseline_s": round(total - base_s, 3),
        },
        "where_the_time_goes_ms": where,
        "batch": {
            "files": args.batch,
            "pages": 10 * args.batch,
            "chunks": small_chunks,
            "upload_to_completed_s": round(batch_s, 3),
            "pages_per_s": round(10 * args.batch / batch_s, 1),
            "chunks_per_s": round(small_chunks / batch_s, 1),
        },
    }
    print(
        f"{args.pages}-page PDF ({len(data) / 1024:.0f} KiB, {chunks} chunks at auto 800/400), "
        f"median of {args.repeat}"
    )
    print(f"  baseline parse+chunk+embed in-process   {base_s:6.2f} s")
    print(f"  upload                                  {upload:6.2f} s")
    print(f"  attach -> completed                     {attach:6.2f} s")
    print(
        f"  upload -> completed                     {total:6.2f} s  "
        f"({args.pages / total:.1f} pages/s, {chunks / total:.1f} chunks/s; target <= 5 s)"
    )
    print("  where the time goes (ms, from the Temporal history):")
    for name, ms in where.items():
        print(f"    {name:<44}{ms:>8.1f}")
    print(
        f"batch of {args.batch} ten-page PDFs: {batch_s:.2f} s "
        f"({10 * args.batch / batch_s:.1f} pages/s, {small_chunks / batch_s:.1f} chunks/s)"
    )
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "ingest.json").write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
