"""Ingestion library throughput: parse -> chunk -> embed for a generated 100-page PDF.

Measures the in-process work an ingestion activity does for one file, with the offline embedding
model, against a baseline measured in the same run: pypdf's own text extraction of the same PDF
(the floor any PDF ingestion pays). The end-to-end number (upload -> `completed` through the API
and Temporal) is the ingestion benchmark's; this one shows where the per-file time goes.

    .venv/bin/python -m bench.ingest_parse [--pages 100] [--repeat 5]

Prints a table and writes bench/results/ingest_parse.json.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import statistics
import time
from collections.abc import Callable
from typing import Any, TypeVar

from pypdf import PdfReader

from assistants.retrieval import LocalEmbedder, chunk_document, parse_document
from assistants.retrieval.chunking import count_tokens
from bench.harness import RESULTS
from tests.support.documents import filler_pages, make_pdf

T = TypeVar("T")


def timed(fn: Callable[..., T], *args: Any) -> tuple[T, float]:
    started = time.perf_counter()
    value = fn(*args)
    return value, time.perf_counter() - started


def embed_in_thread(embedder: LocalEmbedder, texts: list[str]) -> Any:
    # As the activity does it: the model runs in a worker thread, off the event loop.
    return asyncio.run(embedder.embed(texts))


def baseline_extract(data: bytes) -> int:
    """pypdf alone: open and extract every page's text (no cleaning)."""
    reader = PdfReader(io.BytesIO(data))
    return sum(len(page.extract_text() or "") for page in reader.pages)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pages", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()

    # ~450 words a page: a dense report page, ~1.2 chunks of 800 tokens per page at 800/400.
    data = make_pdf(filler_pages(args.pages, paragraphs=5, sentences=7))
    embedder = LocalEmbedder()
    _, load_s = timed(embedder.embed_sync, ["warm up"])  # model load, once per process
    _, encoding_s = timed(count_tokens, "warm up")  # tokenizer load, once per process

    rows: dict[str, list[float]] = {
        "baseline_pypdf": [],
        "parse": [],
        "chunk": [],
        "embed": [],
        "total": [],
    }
    chunks_n = tokens_n = chars_n = 0
    for i in range(args.repeat):
        # Alternate which of the two PDF passes goes first, so neither gains from going second.
        if i % 2:
            doc, parse_s = timed(parse_document, data, "report.pdf", "application/pdf")
            _, base_s = timed(baseline_extract, data)
        else:
            _, base_s = timed(baseline_extract, data)
            doc, parse_s = timed(parse_document, data, "report.pdf", "application/pdf")
        chunks, chunk_s = timed(chunk_document, doc)
        _, embed_s = timed(embed_in_thread, embedder, [c.text for c in chunks])
        rows["baseline_pypdf"].append(base_s)
        rows["parse"].append(parse_s)
        rows["chunk"].append(chunk_s)
        rows["embed"].append(embed_s)
        rows["total"].append(parse_s + chunk_s + embed_s)
        chunks_n, chars_n = len(chunks), len(doc.text)
        tokens_n = sum(c.tokens for c in chunks)

    median = {name: statistics.median(values) for name, values in rows.items()}
    total = median["total"]
    result: dict[str, Any] = {
        "pages": args.pages,
        "pdf_bytes": len(data),
        "text_chars": chars_n,
        "chunks": chunks_n,
        "chunk_tokens": tokens_n,
        "repeat": args.repeat,
        "model_load_s": round(load_s, 3),
        "tokenizer_load_s": round(encoding_s, 3),
        "median_s": {name: round(value, 4) for name, value in median.items()},
        "pages_per_s": {
            "baseline_pypdf": round(args.pages / median["baseline_pypdf"], 1),
            "parse": round(args.pages / median["parse"], 1),
            "parse_chunk_embed": round(args.pages / total, 1),
        },
        "chunks_per_s": {
            "embed": round(chunks_n / median["embed"], 1),
            "parse_chunk_embed": round(chunks_n / total, 1),
        },
        "share_of_total": {
            name: round(median[name] / total, 3) for name in ("parse", "chunk", "embed")
        },
    }
    print(
        f"{args.pages}-page PDF, {len(data) / 1024:.0f} KiB, {chars_n} chars -> {chunks_n} "
        f"chunks ({tokens_n} tokens) at auto 800/400; median of {args.repeat}"
    )
    print(
        f"one-time loads: embedding model {load_s * 1000:.0f} ms, "
        f"tokenizer {encoding_s * 1000:.0f} ms"
    )
    print(f"{'stage':<16}{'median ms':>10}{'pages/s':>10}{'chunks/s':>10}{'share':>8}")
    for name in ("baseline_pypdf", "parse", "chunk", "embed", "total"):
        seconds = median[name]
        share = f"{seconds / total:.0%}" if name != "baseline_pypdf" else "-"
        print(
            f"{name:<16}{seconds * 1000:>10.0f}{args.pages / seconds:>10.1f}"
            f"{chunks_n / seconds:>10.1f}{share:>8}"
        )
    overhead = median["parse"] / median["baseline_pypdf"]
    print(
        f"parse vs pypdf alone: x{overhead:.2f}; parse+chunk+embed {total:.2f} s "
        "(README target: 100-page PDF completed end to end in <= 5 s)"
    )
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "ingest_parse.json").write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
