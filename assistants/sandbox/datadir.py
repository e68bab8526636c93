"""Safe access to a sandbox's /mnt/data from the worker.

The sandboxed code controls everything under /mnt/data: it can plant symlinks to host paths,
FIFOs that block a reader, `..` tricks, or swap a directory for a link between two of our calls.
So the worker never resolves a path string there. It holds an open directory descriptor of the
sandbox's /mnt/data and walks one component at a time with `openat(..., O_NOFOLLOW)`: a symlink
anywhere on the way fails, only regular files are read (checked with `fstat` on the opened
descriptor, so a swap after the check cannot matter), and names are validated before use.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from collections.abc import Iterator

from assistants.sandbox.base import DATA_DIR, SandboxFile, SandboxFileError

MAX_PATH_CHARS = 1024
MAX_DEPTH = 16
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
_CHUNK = 1024 * 1024


def split_data_path(path: str) -> list[str]:
    """The components of a path under /mnt/data, or `SandboxFileError`.

    Accepts `name.csv`, `dir/name.csv` and `/mnt/data/dir/name.csv`; refuses empty paths, other
    absolute paths, `.`/`..` components, empty components, NUL bytes and over-long names.
    """
    if not path or len(path) > MAX_PATH_CHARS or "\x00" in path:
        raise SandboxFileError(f"invalid path {path!r}")
    prefix = DATA_DIR + "/"
    if path.startswith(prefix):
        path = path[len(prefix) :]
    elif path.startswith("/"):
        raise SandboxFileError(f"path {path!r} is outside {DATA_DIR}")
    parts = path.split("/")
    if len(parts) > MAX_DEPTH:
        raise SandboxFileError(f"path {path!r} is too deep")
    for part in parts:
        if part in ("", ".", "..") or len(part.encode("utf-8", "surrogateescape")) > 255:
            raise SandboxFileError(f"invalid path {path!r}")
    return parts


@contextlib.contextmanager
def _fd(fd: int) -> Iterator[int]:
    try:
        yield fd
    finally:
        os.close(fd)


def _open_dir(parent_fd: int, name: str) -> int:
    try:
        return os.open(name, _DIR_FLAGS, dir_fd=parent_fd)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR):
            raise SandboxFileError(f"{name!r} is not a directory (or is a symlink)") from None
        if exc.errno == errno.ENOENT:
            raise SandboxFileError(f"no such directory {name!r}") from None
        raise


class DataDir:
    """Operations on one sandbox's /mnt data through an open directory descriptor.

    `owner` is the (uid, gid) that files placed by the worker get, so the sandboxed code can
    change or delete them; None leaves them owned by the worker's uid (same uid anyway).
    Blocking calls: run them off the event loop.
    """

    def __init__(self, root_fd: int, owner: tuple[int, int] | None) -> None:
        self._root_fd = root_fd
        self._owner = owner

    def _walk_to_parent(self, parts: list[str], *, create: bool) -> int:
        """An fd of the directory holding the last component (caller closes it)."""
        fd = os.open(".", _DIR_FLAGS, dir_fd=self._root_fd)
        try:
            for part in parts[:-1]:
                if create:
                    with contextlib.suppress(FileExistsError):
                        os.mkdir(part, 0o755, dir_fd=fd)
                        if self._owner is not None:
                            os.chown(part, *self._owner, dir_fd=fd, follow_symlinks=False)
                child = _open_dir(fd, part)
                os.close(fd)
                fd = child
        except BaseException:
            os.close(fd)
            raise
        return fd

    def read(self, path: str, max_bytes: int) -> bytes:
        parts = split_data_path(path)
        with _fd(self._walk_to_parent(parts, create=False)) as parent:
            try:
                fd = os.open(parts[-1], _READ_FLAGS, dir_fd=parent)
            except OSError as exc:
                if exc.errno == errno.ELOOP:
                    raise SandboxFileError(f"{path!r} is a symlink") from None
                if exc.errno in (errno.ENOENT, errno.ENOTDIR):
                    raise SandboxFileError(f"no such file {path!r}") from None
                if exc.errno == errno.ENXIO:  # a socket, or a FIFO without a writer
                    raise SandboxFileError(f"{path!r} is not a regular file") from None
                raise
        with _fd(fd):
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode):
                raise SandboxFileError(f"{path!r} is not a regular file")
            if info.st_size > max_bytes:
                raise SandboxFileError(f"{path!r} is larger than {max_bytes} bytes")
            chunks: list[bytes] = []
            total = 0
            while chunk := os.read(fd, min(_CHUNK, max_bytes + 1 - total)):
                chunks.append(chunk)
                total += len(chunk)
                if total > max_bytes:  # it grew while we read
                    raise SandboxFileError(f"{path!r} is larger than {max_bytes} bytes")
            return b"".join(chunks)

    def write(self, path: str, data: bytes) -> None:
        parts = split_data_path(path)
        with _fd(self._walk_to_parent(parts, create=True)) as parent:
            name = parts[-1]
            try:
                info = os.stat(name, dir_fd=parent, follow_symlinks=False)
            except FileNotFoundError:
                pass
            else:
                if stat.S_ISDIR(info.st_mode):
                    raise SandboxFileError(f"{path!r} is a directory")
                os.unlink(name, dir_fd=parent)  # a file, or whatever the code put there
            flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
            try:
                fd = os.open(name, flags, 0o644, dir_fd=parent)
            except FileExistsError:
                raise SandboxFileError(f"{path!r} changed while being written") from None
            with _fd(fd):
                if self._owner is not None:
                    os.fchown(fd, *self._owner)
                view = memoryview(data)
                try:
                    while view:
                        view = view[os.write(fd, view[:_CHUNK]) :]
                except OSError as exc:
                    if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
                        os.unlink(name, dir_fd=parent)
                        raise SandboxFileError(
                            f"no room for {path!r} in {DATA_DIR}: {exc.strerror}"
                        ) from None
                    raise

    def list(self, max_files: int) -> list[SandboxFile]:
        found: list[SandboxFile] = []
        root = os.open(".", _DIR_FLAGS, dir_fd=self._root_fd)
        pending: list[tuple[int, str, int]] = [(root, "", 0)]  # (fd, prefix, depth)
        try:
            while pending and len(found) < max_files:
                fd, prefix, depth = pending.pop()
                with _fd(fd):
                    for entry in _scan(fd):
                        rel = prefix + entry.name
                        if entry.is_symlink():
                            continue
                        if entry.is_file(follow_symlinks=False):
                            info = entry.stat(follow_symlinks=False)
                            found.append(SandboxFile(rel, info.st_size, info.st_mtime_ns))
                        elif entry.is_dir(follow_symlinks=False) and depth + 1 < MAX_DEPTH:
                            with contextlib.suppress(SandboxFileError, OSError):
                                pending.append((_open_dir(fd, entry.name), rel + "/", depth + 1))
        finally:
            for fd, _, _ in pending:
                os.close(fd)
        found.sort(key=lambda f: f.path)
        return found[:max_files]


def _scan(fd: int) -> list[os.DirEntry[str]]:
    # os.scandir(fd) reads through a duplicate of `fd`; collect eagerly so the fd can close.
    with os.scandir(fd) as it:
        return list(it)
