"""Chunking: exact offsets, token bounds, overlap, sentence snapping, pages, and the
`chunking_strategy` validation the API uses."""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from assistants.errors import InvalidRequest
from assistants.retrieval import (
    Chunk,
    ParsedDocument,
    chunk_document,
    count_tokens,
    parse_document,
    static_chunking_strategy,
    validate_chunking,
)
from assistants.retrieval.chunking import (
    MAX_FILE_TOKENS,
    _encoding,
    _tail_tokens,
    _token_char_offsets,
)
from tests.support.documents import filler_pages, filler_sentences, make_pdf

PROSE = "\n\n".join(" ".join(filler_sentences(8, seed=s)) for s in range(60))
UNICODE = "\n\n".join(
    f"Paragraphe {i}: café, naïve, 東京タワーは高い。日本語の文です\uff01 🚀🔥 ok. Ünï {i}."
    for i in range(300)
)
CODE = "\n".join(
    f"def function_{i}(x: int) -> int:\n    return x * {i} + len('{'ab' * (i % 7)}')\n"
    for i in range(400)
)
NO_BREAKS = " ".join(["alpha beta gamma delta"] * 900)  # no sentence, line or paragraph break

BOUNDS = [(100, 0), (100, 50), (250, 60), (800, 400), (800, 0), (4096, 2048)]


def _check_invariants(doc: ParsedDocument, chunks: list[Chunk], max_tokens: int) -> None:
    assert chunks, "a non-empty document has chunks"
    assert [c.position for c in chunks] == list(range(len(chunks)))
    for chunk in chunks:
        assert doc.text[chunk.char_start : chunk.char_end] == chunk.text
        assert chunk.text == chunk.text.strip() and chunk.text
        assert chunk.tokens == count_tokens(chunk.text)
        assert 0 < chunk.tokens <= max_tokens
        assert chunk.page == doc.page_of(chunk.char_start)
    for prev, nxt in itertools.pairwise(chunks):
        assert nxt.char_start > prev.char_start  # progress
        # No gap: nothing but whitespace between a chunk and the next.
        assert not doc.text[prev.char_end : nxt.char_start].strip()
    # The whole document is covered.
    assert not doc.text[: chunks[0].char_start].strip()
    assert not doc.text[chunks[-1].char_end :].strip()


@pytest.mark.parametrize(("max_tokens", "overlap"), BOUNDS)
@pytest.mark.parametrize(
    "text", [PROSE, UNICODE, CODE, NO_BREAKS], ids=["prose", "unicode", "code", "nobreaks"]
)
def test_offsets_tokens_and_coverage(text: str, max_tokens: int, overlap: int) -> None:
    doc = ParsedDocument(text)
    chunks = chunk_document(doc, max_tokens, overlap)
    _check_invariants(doc, chunks, max_tokens)


@pytest.mark.parametrize(("max_tokens", "overlap"), BOUNDS)
def test_overlap_is_respected(max_tokens: int, overlap: int) -> None:
    doc = ParsedDocument(PROSE)
    chunks = chunk_document(doc, max_tokens, overlap)
    assert len(chunks) > 2
    # Overlap is counted in the document's own tokens (a slice re-tokenised on its own can
    # differ by one at its edge: " word" inside the text is one token, "word" may be two).
    starts = _token_char_offsets(doc.text, _encoding().encode_ordinary(doc.text))
    for prev, nxt in itertools.pairwise(chunks):
        if overlap == 0:
            assert nxt.char_start >= prev.char_end
        else:
            assert nxt.char_start < prev.char_end, "consecutive chunks overlap"
            shared = sum(
                1
                for lo, hi in itertools.pairwise(starts)
                if lo < prev.char_end and hi > nxt.char_start
            )
            assert shared <= overlap


def test_auto_defaults_are_800_and_400() -> None:
    doc = ParsedDocument(PROSE)
    assert chunk_document(doc) == chunk_document(doc, 800, 400)


def test_windows_end_at_sentence_ends() -> None:
    # Sentences of 6-16 words: a window's last 15% (120 tokens) always holds a sentence end.
    text = " ".join(filler_sentences(900, seed=3))
    chunks = chunk_document(ParsedDocument(text), 800, 400)
    assert len(chunks) > 5
    for chunk in chunks[:-1]:
        assert chunk.text.endswith("."), chunk.text[-40:]
        assert chunk.tokens > 800 * 0.85 - 2
    for chunk in chunks[1:]:
        assert chunk.text[0].isupper(), "the overlap begins at a sentence start"


def test_windows_prefer_paragraph_breaks() -> None:
    # Paragraphs of ~50 tokens: the last 15% of an 800-token window holds a paragraph end, so
    # every window ends at one (the text after it starts a new paragraph).
    text = "\n\n".join(" ".join(filler_sentences(3, seed=s)) for s in range(400))
    doc = ParsedDocument(text)
    chunks = chunk_document(doc, 800, 0)
    for chunk in chunks[:-1]:
        assert doc.text[chunk.char_end : chunk.char_end + 2] == "\n\n"


def test_hard_cut_without_any_break_fills_windows() -> None:
    chunks = chunk_document(ParsedDocument(NO_BREAKS), 100, 0)
    assert all(c.tokens >= 95 for c in chunks[:-2])


def test_no_short_tail_chunk() -> None:
    # 105 tokens, 100-token windows, no overlap: a plain split would leave a 5-token chunk.
    text = " ".join(["word"] * 105)
    assert count_tokens(text) == 105
    chunks = chunk_document(ParsedDocument(text), 100, 0)
    assert len(chunks) == 2
    assert chunks[-1].tokens >= _tail_tokens(100)
    assert sum(c.tokens for c in chunks) == 105


def test_short_document_is_one_chunk() -> None:
    doc = ParsedDocument("  Just one short sentence.  \n")
    [chunk] = chunk_document(doc)
    assert chunk.text == "Just one short sentence."
    assert (chunk.char_start, chunk.char_end) == (2, 26)
    assert chunk.page is None


def test_empty_document_has_no_chunks() -> None:
    assert chunk_document(ParsedDocument("")) == []


def test_chunks_of_a_real_pdf_know_their_pages() -> None:
    pages = filler_pages(12, paragraphs=3, sentences=5)
    pages = [f"Page marker {i + 1}. {text}" for i, text in enumerate(pages)]
    doc = parse_document(make_pdf(pages), "book.pdf")
    assert len(doc.page_starts) == 12
    chunks = chunk_document(doc, 300, 60)
    _check_invariants(doc, chunks, 300)
    assert chunks[0].page == 1
    assert chunks[-1].page in (11, 12)
    for chunk in chunks:
        page = chunk.page
        assert page is not None
        lo = doc.page_starts[page - 1]
        hi = doc.page_starts[page] if page < 12 else len(doc.text)
        assert lo <= chunk.char_start < hi
    # Every page's marker is in some chunk that starts on that page or the one before.
    for i in range(1, 13):
        holders = [c for c in chunks if f"Page marker {i}." in c.text]
        assert holders and min(c.page or 0 for c in holders) in (i - 1, i)


def test_too_many_tokens_is_invalid_file(monkeypatch: pytest.MonkeyPatch) -> None:
    from assistants.retrieval import InvalidFile, chunking

    monkeypatch.setattr(chunking, "MAX_FILE_TOKENS", 1000)
    with pytest.raises(InvalidFile):
        chunk_document(ParsedDocument("word " * 1001))
    assert MAX_FILE_TOKENS == 5_000_000


# --- validation ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("max_tokens", "overlap"), [(100, 0), (100, 50), (4096, 2048), (800, 400)])
def test_valid_bounds(max_tokens: int, overlap: int) -> None:
    validate_chunking(max_tokens, overlap)


@pytest.mark.parametrize(
    ("max_tokens", "overlap", "param"),
    [
        (99, 0, "max_chunk_size_tokens"),
        (4097, 0, "max_chunk_size_tokens"),
        (0, 0, "max_chunk_size_tokens"),
        (100, 51, "chunk_overlap_tokens"),
        (800, -1, "chunk_overlap_tokens"),
        (800, 401, "chunk_overlap_tokens"),
        (800.0, 100, "max_chunk_size_tokens"),
        (True, 0, "max_chunk_size_tokens"),
        (800, "100", "chunk_overlap_tokens"),
    ],
)
def test_invalid_bounds_are_400(max_tokens: Any, overlap: Any, param: str) -> None:
    with pytest.raises(InvalidRequest) as info:
        validate_chunking(max_tokens, overlap)
    assert info.value.status_code == 400
    assert info.value.param == f"chunking_strategy.static.{param}"


def test_static_form_of_auto_and_static() -> None:
    auto = {"type": "static", "static": {"max_chunk_size_tokens": 800, "chunk_overlap_tokens": 400}}
    assert static_chunking_strategy(None) == auto
    assert static_chunking_strategy({"type": "auto"}) == auto
    given = {"type": "static", "static": {"max_chunk_size_tokens": 300, "chunk_overlap_tokens": 0}}
    assert static_chunking_strategy(given) == given


@pytest.mark.parametrize(
    "raw",
    [
        "auto",
        {"type": "semantic"},
        {},
        {"type": "static"},
        {"type": "static", "static": {"max_chunk_size_tokens": 800}},
        {"type": "static", "static": {"max_chunk_size_tokens": 50, "chunk_overlap_tokens": 0}},
        {"type": "static", "static": {"max_chunk_size_tokens": 800, "chunk_overlap_tokens": 500}},
        {
            "type": "static",
            "static": {"max_chunk_size_tokens": 800, "chunk_overlap_tokens": 0, "x": 1},
        },
        {"type": "auto", "static": {"max_chunk_size_tokens": 800, "chunk_overlap_tokens": 0}},
    ],
)
def test_bad_chunking_strategies_are_400(raw: Any) -> None:
    with pytest.raises(InvalidRequest) as info:
        static_chunking_strategy(raw, param="chunking_strategy")
    assert info.value.param is not None and info.value.param.startswith("chunking_strategy")
