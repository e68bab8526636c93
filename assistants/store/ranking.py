"""Hybrid ranking of vector-store search, as pure functions.

Why it exists: the lexical (BM25 / ts_rank) and vector (cosine) scores live on unrelated scales,
so they are fused by rank: weighted reciprocal-rank fusion (the model OpenAI's
`ranking_options.hybrid_search{embedding_weight, text_weight}` describes), then divided by its
maximum, so that a chunk ranked first by both lists scores 1.0 and every score is in [0, 1]:
`score_threshold` then means the same thing for every store and query.

RRF's constant is 1, not the customary 60: tuned on bench/retrieval_quality.py (known-item
queries over the stdlib's API docs). With two lists of unequal quality, k = 60 flattens the
ranks so much that fusion lost to full text alone on nDCG@10; a small k lets each list's top
results lead, and hybrid then beats both halves (numbers in the README).

User text never reaches a full-text engine raw (FTS5 rejects `?`, `'`, `-`, `:` or a bare `AND`):
queries become quoted, stop-word-filtered terms joined by OR.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

RRF_K = 1
MAX_TERMS = 32
MAX_TERM_LENGTH = 64

# Words that carry no topic: an OR of them matches nearly every chunk and costs the most.
_STOP_WORDS_TEXT = """
a about above after again against all am an and any are as at be because been before being below
between both but by can could did do does doing down during each few for from further had has have
having he her here hers herself him himself his how i if in into is it its itself just me more most
my myself no nor not now of off on once only or other our ours ourselves out over own same she
should so some such than that the their theirs them themselves then there these they this those
through to too under until up very was we were what when where which while who whom why will with
would you your yours yourself yourselves
"""
STOP_WORDS = frozenset(_STOP_WORDS_TEXT.split())
_WORD = re.compile(r"[^\W_]+")


def query_terms(query: str) -> list[str]:
    """The distinct search terms of a query, in order: letters and digits only, lower-cased, stop
    words dropped (unless nothing else is left), at most MAX_TERMS."""
    words = [w for w in _WORD.findall(query.lower()) if len(w) <= MAX_TERM_LENGTH]
    kept = [w for w in words if w not in STOP_WORDS] or words
    return list(dict.fromkeys(kept))[:MAX_TERMS]


def fts5_query(terms: Sequence[str]) -> str:
    """An FTS5 MATCH expression: each term a quoted string (tokenized and stemmed like the
    indexed text), any of them matching."""
    return " OR ".join('"' + term.replace('"', '""') + '"' for term in terms)


def candidates(max_num_results: int) -> int:
    """How deep each list (lexical, vector) is read before fusion."""
    return max(50, 5 * max_num_results)


@dataclass(frozen=True)
class Weights:
    embedding: float = 1.0
    text: float = 1.0

    def __post_init__(self) -> None:
        if self.embedding < 0 or self.text < 0 or self.embedding + self.text <= 0:
            raise ValueError("fusion weights must be >= 0 and not both 0")


EQUAL_WEIGHTS = Weights()


def configured_weights(embedding: float, text: float) -> Weights:
    """The fusion weights from settings (`ASSISTANTS_SEARCH_EMBEDDING_WEIGHT` / `_TEXT_WEIGHT`),
    used alike by `POST /vector_stores/{id}/search` and the file_search tool; both zero means
    equal weights."""
    return Weights(embedding, text) if embedding + text > 0 else EQUAL_WEIGHTS


def fuse(
    lexical: Iterable[int], vector: Iterable[int], weights: Weights = EQUAL_WEIGHTS
) -> dict[int, float]:
    """Weighted RRF of two ranked lists of ids, normalised to [0, 1] (1.0 = first in both)."""
    fused: dict[int, float] = {}
    for weight, ranked in ((weights.text, lexical), (weights.embedding, vector)):
        if weight == 0:
            continue
        for rank, item in enumerate(ranked, start=1):
            fused[item] = fused.get(item, 0.0) + weight / (RRF_K + rank)
    best = (weights.embedding + weights.text) / (RRF_K + 1)
    return {item: min(1.0, score / best) for item, score in fused.items()}


def merge_max(scores: Iterable[dict[int, float]]) -> dict[int, float]:
    """Results of several queries (or stores): each chunk keeps its best score."""
    merged: dict[int, float] = {}
    for one in scores:
        for item, score in one.items():
            if score > merged.get(item, -1.0):
                merged[item] = score
    return merged


@dataclass(frozen=True)
class Span:
    """Where a chunk sits in its file (one generation of it): for overlap de-duplication."""

    key: tuple[str, str, int]  # (vector_store_id, file_id, generation)
    start: int
    end: int


def drop_overlapping(
    ranked: Sequence[int], spans: dict[int, Span], max_overlap: float = 0.5
) -> list[int]:
    """Keep ranked ids in order, dropping a chunk when more than `max_overlap` of its characters
    lie inside a better-ranked kept chunk of the same file (overlapping windows otherwise crowd
    out distinct results)."""
    kept: list[int] = []
    taken: dict[tuple[str, str, int], list[tuple[int, int]]] = {}
    for item in ranked:
        span = spans.get(item)
        if span is None:
            continue
        length = max(1, span.end - span.start)
        overlaps = taken.setdefault(span.key, [])
        if any(
            min(span.end, end) - max(span.start, start) > max_overlap * length
            for start, end in overlaps
        ):
            continue
        overlaps.append((span.start, span.end))
        kept.append(item)
    return kept
