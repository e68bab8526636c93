"""Per-store float32 matrices for exact cosine search with numpy (SQLite, and PostgreSQL without
pgvector).

Why it exists: reading a store's embeddings from the database for every query costs far more than
ranking them (100k x 256 floats is 100 MB), so each process keeps a store's matrix in memory and
re-reads only what changed. Staleness is decided by the database, not by the process: every chunk
insert or delete bumps `vector_store_chunk_stats.version` in the same transaction, so any number of
API and worker processes stay correct. A refresh reads the store's chunk `seq`s (which never
repeat), keeps the cached rows still present and loads only the new ones.

The matrix holds every chunk of the store, visible or not; visibility (a `completed` file row of
the same generation) and attribute filters are a per-query mask over (file, generation) groups.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

F32 = npt.NDArray[np.float32]
I64 = npt.NDArray[np.int64]
I32 = npt.NDArray[np.int32]

# (seq, file_id, generation, float32 embedding bytes)
ChunkVector = tuple[int, str, int, bytes]


@dataclass
class StoreMatrix:
    version: int
    dims: int
    seqs: I64
    groups: I32  # index into `group_keys` per row
    matrix: F32  # (n, dims), rows L2-normalised
    group_keys: list[tuple[str, int]] = field(default_factory=list)
    group_index: dict[tuple[str, int], int] = field(default_factory=dict)

    @property
    def nbytes(self) -> int:
        return int(self.matrix.nbytes + self.seqs.nbytes + self.groups.nbytes)

    def mask(self, allowed: set[tuple[str, int]]) -> npt.NDArray[np.bool_]:
        ok = np.fromiter((key in allowed for key in self.group_keys), bool, len(self.group_keys))
        result: npt.NDArray[np.bool_] = ok[self.groups] if len(self.groups) else ok[:0]
        return result

    def top(self, queries: F32, allowed: set[tuple[str, int]], k: int) -> list[list[int]]:
        """For each query row, the seqs of the `k` most similar allowed chunks, best first."""
        if not len(self.seqs):
            return [[] for _ in range(len(queries))]
        mask = self.mask(allowed)
        visible = np.flatnonzero(mask)
        if not len(visible):
            return [[] for _ in range(len(queries))]
        sub = self.matrix if len(visible) == len(self.seqs) else self.matrix[visible]
        sims = queries @ sub.T  # (n_queries, n_visible): one contiguous row per query
        out: list[list[int]] = []
        for scores in sims:
            n = min(k, len(scores))
            best = np.argpartition(scores, len(scores) - n)[len(scores) - n :]
            best = best[np.argsort(-scores[best], kind="stable")]
            out.append([int(s) for s in self.seqs[visible[best]]])
        return out


def _normalised(rows: Sequence[bytes], dims: int) -> F32:
    if not rows:
        return np.zeros((0, dims), np.float32)
    matrix = np.frombuffer(b"".join(rows), dtype="<f4").reshape(len(rows), dims).astype(np.float32)
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    normalised: F32 = matrix / norms
    return normalised


def build(version: int, dims: int, rows: Sequence[ChunkVector]) -> StoreMatrix:
    entry = StoreMatrix(
        version=version,
        dims=dims,
        seqs=np.zeros(0, np.int64),
        groups=np.zeros(0, np.int32),
        matrix=np.zeros((0, dims), np.float32),
    )
    return extend(entry, version, np.ones(0, bool), rows)


def extend(
    entry: StoreMatrix, version: int, keep: npt.NDArray[np.bool_], rows: Sequence[ChunkVector]
) -> StoreMatrix:
    """A new matrix: the rows of `entry` where `keep`, plus `rows`."""
    group_keys = list(entry.group_keys)
    group_index = dict(entry.group_index)
    new_groups = []
    for _, file_id, generation, _ in rows:
        key = (file_id, generation)
        index = group_index.get(key)
        if index is None:
            index = group_index[key] = len(group_keys)
            group_keys.append(key)
        new_groups.append(index)
    kept = (
        (entry.seqs[keep], entry.groups[keep], entry.matrix[keep])
        if len(entry.seqs)
        else (entry.seqs, entry.groups, entry.matrix)
    )
    return StoreMatrix(
        version=version,
        dims=entry.dims,
        seqs=np.concatenate([kept[0], np.fromiter((r[0] for r in rows), np.int64, len(rows))]),
        groups=np.concatenate([kept[1], np.asarray(new_groups, np.int32)]),
        matrix=np.concatenate([kept[2], _normalised([r[3] for r in rows], entry.dims)]),
        group_keys=group_keys,
        group_index=group_index,
    )


class VectorCache:
    """Store matrices by vector store id, least recently used evicted past `max_bytes`."""

    def __init__(self, max_bytes: int = 512 * 1024 * 1024) -> None:
        self.max_bytes = max_bytes
        self._entries: OrderedDict[str, StoreMatrix] = OrderedDict()
        self._lock = threading.Lock()
        self._store_locks: dict[str, threading.Lock] = {}

    def get(self, vector_store_id: str) -> StoreMatrix | None:
        with self._lock:
            entry = self._entries.get(vector_store_id)
            if entry is not None:
                self._entries.move_to_end(vector_store_id)
            return entry

    def lock(self, vector_store_id: str) -> threading.Lock:
        """Serialises refreshes of one store (concurrent searches wait for one load)."""
        with self._lock:
            return self._store_locks.setdefault(vector_store_id, threading.Lock())

    def put(self, vector_store_id: str, entry: StoreMatrix) -> None:
        with self._lock:
            self._entries[vector_store_id] = entry
            self._entries.move_to_end(vector_store_id)
            total = sum(e.nbytes for e in self._entries.values())
            while total > self.max_bytes and len(self._entries) > 1:
                _, evicted = self._entries.popitem(last=False)
                total -= evicted.nbytes

    def discard(self, vector_store_id: str) -> None:
        with self._lock:
            self._entries.pop(vector_store_id, None)

    def refresh(
        self,
        vector_store_id: str,
        version: int,
        dims: int,
        current_seqs: Callable[[], I64],
        load: Callable[[I64 | None], list[ChunkVector]],
    ) -> StoreMatrix:
        """The store's matrix at `version` (or newer): cached, patched, or loaded whole.

        `current_seqs()` lists the store's chunk seqs now; `load(seqs)` reads those chunks
        (`None`: all of them). Read the version *before* calling this: a matrix built from a
        later state is only ever labelled older, which costs one extra refresh, never a stale hit.
        """
        entry = self.get(vector_store_id)
        if entry is not None and entry.version == version and entry.dims == dims:
            return entry
        with self.lock(vector_store_id):
            entry = self.get(vector_store_id)
            if entry is not None and entry.version == version and entry.dims == dims:
                return entry
            if entry is None or entry.dims != dims:
                fresh = build(version, dims, load(None))
            else:
                seqs = current_seqs()
                keep = np.isin(entry.seqs, seqs)
                new = np.setdiff1d(seqs, entry.seqs, assume_unique=True)
                if len(new) > max(1000, len(seqs) // 2):
                    fresh = build(version, dims, load(None))
                else:
                    fresh = extend(entry, version, keep, load(new) if len(new) else [])
            self.put(vector_store_id, fresh)
            return fresh
