"""The sandbox layer's worker-side guards, without a sandbox: the /mnt/data walker (symlinks,
`..`, FIFOs, swaps) on a plain directory, and the output caps on crafted kernel messages (what a
kernel that bypassed its own caps could send)."""

from __future__ import annotations

import base64
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from assistants.sandbox.base import OutputChunk, SandboxFileError, SandboxLimits
from assistants.sandbox.datadir import DataDir, split_data_path
from assistants.sandbox.output import OutputCollector

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 100


@pytest.fixture
def datadir(tmp_path: Path) -> Iterator[tuple[DataDir, Path]]:
    root = tmp_path / "data"
    root.mkdir()
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    yield DataDir(fd, None), root
    os.close(fd)


@pytest.mark.parametrize(
    ("path", "parts"),
    [
        ("a.csv", ["a.csv"]),
        ("dir/a.csv", ["dir", "a.csv"]),
        ("/mnt/data/dir/a.csv", ["dir", "a.csv"]),
        ("名前 with space.txt", ["名前 with space.txt"]),
        ("..a/b..", ["..a", "b.."]),
    ],
)
def test_valid_paths(path: str, parts: list[str]) -> None:
    assert split_data_path(path) == parts


@pytest.mark.parametrize(
    "path",
    [
        "",
        "/",
        "/etc/passwd",
        "../x",
        "a/../../x",
        "a/./b",
        "a//b",
        "a/",
        "/mnt/data/",
        "/mnt/x",
        "a\x00b",
        "x" * 256,
        "/".join(["d"] * 17),
    ],
)
def test_invalid_paths(path: str) -> None:
    with pytest.raises(SandboxFileError):
        split_data_path(path)


def test_walker_never_follows_links_or_opens_fifos(
    datadir: tuple[DataDir, Path], tmp_path: Path
) -> None:
    data, root = datadir
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("host secret")
    (root / "real").mkdir()
    (root / "real" / "ok.txt").write_text("fine")
    (root / "link").symlink_to(outside / "secret.txt")
    (root / "dirlink").symlink_to(outside)
    (root / "real" / "up").symlink_to("..")
    os.mkfifo(root / "fifo")

    assert [(f.path, f.size) for f in data.list(100)] == [("real/ok.txt", 4)]
    assert data.read("real/ok.txt", 100) == b"fine"
    for path in [
        "link",
        "dirlink/secret.txt",
        "real/up/real/ok.txt",
        "fifo",
        "missing",
        "real/missing/x",
        "real",
    ]:
        with pytest.raises(SandboxFileError):
            data.read(path, 100)
    with pytest.raises(SandboxFileError):
        data.read("real/ok.txt", 3)


def test_writes_replace_links_instead_of_writing_through(
    datadir: tuple[DataDir, Path], tmp_path: Path
) -> None:
    data, root = datadir
    victim = tmp_path / "victim.txt"
    victim.write_text("untouched")
    (root / "victim").symlink_to(victim)
    (root / "dirlink").symlink_to(tmp_path)
    data.write("victim", b"new")
    assert victim.read_text() == "untouched"
    assert not (root / "victim").is_symlink() and (root / "victim").read_bytes() == b"new"
    with pytest.raises(SandboxFileError):
        data.write("dirlink/victim.txt", b"pwned")
    assert victim.read_text() == "untouched"
    data.write("new/deep/file.bin", b"\x00\x01")
    assert (root / "new" / "deep" / "file.bin").read_bytes() == b"\x00\x01"
    (root / "adir").mkdir()
    with pytest.raises(SandboxFileError):
        data.write("adir", b"x")
    assert len(data.list(2)) == 2  # capped listing


async def test_text_is_capped_at_a_utf8_boundary_and_chunks_add_up() -> None:
    chunks: list[OutputChunk] = []

    async def on_output(chunk: OutputChunk) -> None:
        chunks.append(chunk)

    collector = OutputCollector(SandboxLimits(max_output_bytes=1024), on_output)
    await collector.message("stream", {"name": "stdout", "text": "start"})
    await collector.message("execute_result", {"data": {"text/plain": "42"}})
    await collector.message("stream", {"name": "stderr", "text": "é" * 5000})
    await collector.message("stream", {"name": "stdout", "text": "never shown"})
    await collector.message("error", {"traceback": ["\x1b[31mValueError\x1b[0m: bad", "x" * 5000]})
    result = await collector.finish("error", duration_s=0.1)
    assert result.truncated and result.status == "error"
    assert result.logs.startswith("start\n42\néé")
    assert "never shown" not in result.logs and "[output truncated" in result.logs
    text_part = result.logs.split("\n[output truncated")[0]
    assert len(text_part.encode()) <= 1024
    assert result.error is not None and result.error.startswith("ValueError: bad")
    assert "\x1b" not in result.logs and len(result.error.encode()) <= 1024
    assert "".join(c.text for c in chunks) == result.logs


async def test_images_are_capped_and_checked() -> None:
    collector = OutputCollector(SandboxLimits(max_images=2, max_image_bytes=1024), None)
    good = base64.b64encode(PNG).decode()
    await collector.message("display_data", {"data": {"image/png": good, "text/plain": "<Fig>"}})
    await collector.message("display_data", {"data": {"image/png": "not base64!!"}})
    not_png = base64.b64encode(b"GIF89a" + b"\x00" * 50).decode()
    await collector.message("display_data", {"data": {"image/png": not_png}})
    huge = base64.b64encode(PNG + b"\x00" * 2000).decode()
    await collector.message("display_data", {"data": {"image/png": huge}})
    await collector.message("display_data", {"data": {"image/png": good}})
    await collector.message("display_data", {"data": {"image/png": good}})
    result = await collector.finish("ok", duration_s=0.1)
    assert result.images == [PNG, PNG]
    assert "<Fig>" not in result.logs and "images were dropped" in result.logs
    assert result.truncated
