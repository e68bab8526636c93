"""Attacks on the local sandbox backend; each test fails if the protection it names is missing.

Real sandboxes (nsjail + the .venv-sandbox Python), no Temporal. Read-only probes share one
session; every attack that may end a session gets its own, and each ends by showing that the
host is fine and that the next call works (in the same session when it survived).
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from assistants.sandbox import (
    ExecutionResult,
    LocalSandboxBackend,
    LocalSandboxSession,
    SandboxFileError,
)
from tests.support.sandbox import (
    ROOT,
    SANDBOX_PYTHON,
    TEST_LIMITS,
    kernel_pid,
    pid_namespace,
    processes_in_namespace,
    sandbox_config,
)

pytestmark = pytest.mark.timeout(180)

CANARY = "canary-" + secrets.token_hex(12)


@pytest.fixture(scope="module")
def canary_env() -> Iterator[str]:
    """Secrets in the worker's environment, as a real worker has them."""
    names = ["ASSISTANTS_MODEL_API_KEY", "OPENAI_API_KEY", "ASSISTANTS_DATABASE_URL"]
    saved = {name: os.environ.get(name) for name in names}
    for name in names:
        os.environ[name] = f"{CANARY}-{name}"
    yield CANARY
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


@pytest.fixture(scope="module")
async def backend(canary_env: str) -> AsyncIterator[LocalSandboxBackend]:
    backend = LocalSandboxBackend(sandbox_config())
    yield backend
    await backend.aclose()


@pytest.fixture(scope="module")
async def session(backend: LocalSandboxBackend) -> AsyncIterator[LocalSandboxSession]:
    session = await backend.start_session("thread_probe")
    yield session
    await session.close()


async def run(session: LocalSandboxSession, code: str, timeout_s: float = 30) -> ExecutionResult:
    return await session.execute(code, timeout_s=timeout_s)


async def value(session: LocalSandboxSession, code: str) -> object:
    """Run `code` whose last line is an expression with a JSON-able value; return that value."""
    lines = code.strip().splitlines()
    body, last = "\n".join(lines[:-1]), lines[-1]
    result = await run(session, f"{body}\nimport json as _j\nprint(_j.dumps({last}))")
    assert result.status == "ok", result.logs
    return json.loads(result.logs)


async def assert_works(session: LocalSandboxSession) -> None:
    result = await run(session, "21 * 2")
    assert (result.status, result.logs) == ("ok", "42"), result.logs


async def assert_fresh_session_works(backend: LocalSandboxBackend) -> None:
    fresh = await backend.start_session("thread_after")
    try:
        await assert_works(fresh)
    finally:
        await fresh.close()


def assert_host_healthy() -> None:
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-c", "print('ok')"], capture_output=True, timeout=30)
    assert done.stdout == b"ok\n" and time.monotonic() - started < 10
    assert os.getloadavg()[0] < 64


def opened_errors(paths: list[str]) -> str:
    """Code printing, for each path, the exception reading it raised (or LEAK)."""
    return (
        "import json\nout = {}\n"
        f"for p in {paths!r}:\n"
        "    try:\n"
        "        open(p, 'rb').read(100)\n"
        "        out[p] = 'LEAK'\n"
        "    except OSError as e:\n"
        "        out[p] = type(e).__name__\n"
        "out"
    )


# --- host files ---------------------------------------------------------------------------


async def test_host_files_are_not_there(session: LocalSandboxSession, tmp_path: Path) -> None:
    secret = tmp_path / "assistants.db"
    secret.write_text("secret rows")
    paths = [
        "/etc/shadow",
        "/etc/passwd",
        "/etc/hostname",
        "/root/.bashrc",
        "/root/.ssh/id_rsa",
        str(ROOT / "README.md"),
        str(ROOT / "assistants" / "config.py"),
        str(ROOT / ".venv" / "pyvenv.cfg"),
        str(ROOT / ".data" / "assistants.db"),
        str(secret),
    ]
    errors = await value(session, opened_errors(paths))
    assert errors == {p: "FileNotFoundError" for p in paths}
    listing = await value(
        session,
        "import os\n"
        f"{{p: sorted(os.listdir(p)) for p in ['/', '/etc', '/root', '{ROOT}']"
        " if os.path.isdir(p)}",
    )
    assert isinstance(listing, dict)
    assert set(listing["/"]) <= {
        "dev",
        "etc",
        "lib",
        "lib64",
        "mnt",
        "opt",
        "proc",
        "root",
        "run",
        "tmp",
        "usr",
        str(ROOT).split("/")[1],
    }
    assert listing["/etc"] == ["fonts"]
    assert listing.get(str(ROOT), [".venv-sandbox"]) == [".venv-sandbox"]  # not the repository
    assert "home" not in listing["/"] and "sys" not in listing["/"]


async def test_the_filesystem_is_read_only_but_tmp_and_data(session: LocalSandboxSession) -> None:
    targets = [
        "/x",
        "/usr/lib/x",
        str(SANDBOX_PYTHON.parent / "x"),
        "/etc/fonts/x",
        "/tmp/ok",
        "/mnt/data/ok",
    ]
    code = (
        "out = {}\n"
        f"for p in {targets!r}:\n"
        "    try:\n"
        "        open(p, 'w').write('x'); out[p] = 'written'\n"
        "    except OSError as e:\n"
        "        out[p] = type(e).__name__\n"
        "out"
    )
    result = await value(session, code)
    assert isinstance(result, dict)
    assert result["/tmp/ok"] == result["/mnt/data/ok"] == "written"
    assert all(result[p] in ("OSError", "PermissionError") for p in targets[:4]), result
    await run(session, "import os; os.remove('/mnt/data/ok')")


async def test_other_processes_are_invisible(session: LocalSandboxSession) -> None:
    host_pids = [os.getpid(), 1, session.process_pid]
    seen = await value(
        session,
        "import os\n"
        f"[sorted(int(p) for p in os.listdir('/proc') if p.isdigit()), "
        f"[os.path.exists(f'/proc/{{p}}/environ') for p in {host_pids[:1] + host_pids[2:]!r}]]",
    )
    assert isinstance(seen, list)
    pids, host_visible = seen
    assert pids == [1]  # only the kernel itself: not the worker, not nsjail, not host init
    assert host_visible == [False, False]
    cmdline = await value(session, "open('/proc/1/cmdline').read().split(chr(0))[1]")
    assert cmdline == "/opt/sandbox/kernel_boot.py"  # pid 1 is the kernel, not a host process


async def test_no_secret_from_the_worker_environment(
    session: LocalSandboxSession, canary_env: str
) -> None:
    # The secret's own random token, not the word "canary" (matplotlib's colour table has
    # "canary yellow", and the sandbox's Python may live under /tmp on a CI machine).
    token = canary_env.encode()
    code = (
        "import os\n"
        # Spelled backwards, so the code itself (in a kernel's history, say) is no hit.
        f"token = {token[::-1]!r}[::-1]\n"
        "hits = [k for k, v in os.environ.items() if token.decode() in k + v]\n"
        "for pid in [p for p in os.listdir('/proc') if p.isdigit()] + ['self']:\n"
        "    for name in ('environ', 'cmdline'):\n"
        "        try:\n"
        "            if token in open(f'/proc/{pid}/{name}', 'rb').read():\n"
        "                hits.append(f'/proc/{pid}/{name}')\n"
        "        except OSError:\n"
        "            pass\n"
        # The sandbox's own Python install is skipped: read-only, built before any worker ran,
        # and hundreds of MB to read (it lives under /tmp when the checkout does).
        "import sys\n"
        "own = os.path.realpath(sys.prefix)\n"
        "for top in ('/tmp', '/mnt/data', '/run', '/etc', '/opt'):\n"
        "    for folder, dirs, files in os.walk(top):\n"
        "        if os.path.realpath(folder) == own:\n"
        "            dirs.clear()\n"
        "            continue\n"
        "        for f in files:\n"
        "            try:\n"
        "                if token in open(os.path.join(folder, f), 'rb').read():\n"
        "                    hits.append(os.path.join(folder, f))\n"
        "            except OSError:\n"
        "                pass\n"
        "[hits, sorted(os.environ)]"
    )
    found = await value(session, code)
    assert isinstance(found, list)
    hits, names = found
    assert hits == []
    assert not any(n.startswith(("ASSISTANTS_", "OPENAI_", "AWS_")) for n in names)
    # The worker really has them (so the test could fail).
    assert os.environ["ASSISTANTS_MODEL_API_KEY"].startswith(canary_env)


# --- network ------------------------------------------------------------------------------


def host_ipv4_addresses() -> list[str]:
    """Non-loopback IPv4 addresses of this host (from /proc/net/fib_trie's local entries)."""
    lines = Path("/proc/net/fib_trie").read_text().splitlines()
    found = {
        lines[i - 1].split()[-1]
        for i, line in enumerate(lines)
        if "/32 host LOCAL" in line and i > 0
    }
    return sorted(a for a in found if not a.startswith("127."))


async def test_no_network(session: LocalSandboxSession) -> None:
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("0.0.0.0", 0))
    listener.listen(8)
    listener.settimeout(0.5)
    port = listener.getsockname()[1]
    addresses = host_ipv4_addresses()
    assert addresses, "the host has no non-loopback address to test against"
    targets = [("127.0.0.1", port), (addresses[0], port), ("10.0.0.1", 80), ("1.1.1.1", 443)]
    code = (
        "import socket\nout = []\n"
        f"for host, port in {targets!r}:\n"
        "    try:\n"
        "        socket.create_connection((host, port), timeout=2).close()\n"
        "        out.append('CONNECTED')\n"
        "    except OSError as e:\n"
        "        out.append(type(e).__name__)\n"
        "try:\n"
        "    socket.getaddrinfo('pypi.org', 443); out.append('RESOLVED')\n"
        "except OSError as e:\n"
        "    out.append(type(e).__name__)\n"
        "try:\n"
        "    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
        "    u.sendto(b'x', ('8.8.8.8', 53))\n"
        "    out.append('SENT')\n"
        "except OSError as e:\n"
        "    out.append(type(e).__name__)\n"
        "try:\n"
        "    socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)\n"
        "    out.append('RAW')\n"
        "except OSError as e:\n"
        "    out.append(type(e).__name__)\n"
        "out"
    )
    outcome = await value(session, code)
    try:
        assert isinstance(outcome, list)
        assert "CONNECTED" not in outcome and "RESOLVED" not in outcome
        assert "SENT" not in outcome and "RAW" not in outcome
        assert outcome[0] == "ConnectionRefusedError"  # its own loopback, not the host's
        with pytest.raises(TimeoutError):
            listener.accept()  # the host listener never saw a connection
    finally:
        listener.close()


# --- privileges ---------------------------------------------------------------------------


async def test_no_privilege_escalation(session: LocalSandboxSession) -> None:
    code = (
        "import ctypes, os\n"
        "libc = ctypes.CDLL(None, use_errno=True)\n"
        "def call(f, *a):\n"
        "    r = f(*a)\n"
        "    return 'OK' if r == 0 else os.strerror(ctypes.get_errno())\n"
        "out = {}\n"
        "try:\n"
        "    os.setuid(0); out['setuid'] = 'OK'\n"
        "except OSError as e:\n"
        "    out['setuid'] = e.strerror\n"
        "out['unshare_user'] = call(libc.unshare, 0x10000000)\n"
        "out['unshare_net'] = call(libc.unshare, 0x40000000)\n"
        "out['clone_newuser'] = 'OK' if libc.syscall(56, 0x10000000 | 17, 0, 0, 0, 0) >= 0 "
        "else os.strerror(ctypes.get_errno())\n"
        "out['mount'] = call(libc.mount, b'none', b'/tmp', b'tmpfs', 0, None)\n"
        "child = os.fork()\n"
        "if child == 0:\n"
        "    import time; time.sleep(5); os._exit(0)\n"
        "out['ptrace'] = call(libc.ptrace, 16, child, None, None)\n"  # PTRACE_ATTACH
        "os.kill(child, 9); os.waitpid(child, 0)\n"
        "status = dict(l.split(':\\t') for l in open('/proc/self/status').read().splitlines() "
        "if ':\\t' in l)\n"
        "out['uid'] = os.getuid()\n"
        "out['caps'] = [status['CapEff'], status['CapPrm'], status['CapBnd']]\n"
        "out['no_new_privs'] = status['NoNewPrivs']\n"
        "out['seccomp'] = status['Seccomp']\n"
        "out"
    )
    out = await value(session, code)
    assert isinstance(out, dict)
    assert out["uid"] != 0
    for attempt in ("setuid", "unshare_user", "unshare_net", "clone_newuser", "mount", "ptrace"):
        assert out[attempt] != "OK", (attempt, out)
    assert out["caps"] == ["0000000000000000"] * 3
    assert out["no_new_privs"] == "1" and out["seccomp"] == "2"


# --- resource exhaustion ------------------------------------------------------------------


async def test_fork_bomb_is_capped_and_the_kernel_survives(backend: LocalSandboxBackend) -> None:
    session = await backend.start_session("thread_forks")
    namespace = pid_namespace(kernel_pid(session))
    try:
        code = (
            "import os, time\nn = 0\n"
            "try:\n"
            "    while n < 10000:\n"
            "        if os.fork() == 0:\n"
            "            time.sleep(60); os._exit(0)\n"
            "        n += 1\n"
            "except OSError as e:\n"
            "    print(n, e.errno)"
        )
        result = await run(session, code)
        count, errno_ = (int(x) for x in result.logs.split())
        assert errno_ == 11 and count < TEST_LIMITS.max_processes  # EAGAIN at the cap
        await assert_works(session)
        assert_host_healthy()
    finally:
        await session.close()
    assert processes_in_namespace(namespace) == []  # close leaves nothing behind


async def test_spinning_fork_bomb_is_killed(backend: LocalSandboxBackend) -> None:
    session = await backend.start_session("thread_forkbomb")
    namespace = pid_namespace(kernel_pid(session))
    try:
        code = (
            "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass"
        )
        started = time.monotonic()
        result = await run(session, code, timeout_s=2)
        assert result.status == "lost" and time.monotonic() - started < 15
        assert "did not stop" in (result.error or "")
        assert processes_in_namespace(namespace) == []  # every forked process is gone
        assert_host_healthy()
    finally:
        await session.close()
    await assert_fresh_session_works(backend)


async def test_memory_bomb(backend: LocalSandboxBackend) -> None:
    session = await backend.start_session("thread_memory")
    try:
        # One huge allocation: a graceful MemoryError (RLIMIT_AS), the kernel lives on.
        huge = await run(session, "x = bytearray(8 * 1024**3)")
        assert huge.status == "error" and "MemoryError" in huge.logs
        await assert_works(session)
        # Memory eaten bit by bit: MemoryError or an OOM kill, noticed at once (not at the
        # 60 s timeout), and the host is fine.
        started = time.monotonic()
        eaten = await run(
            session, "chunks = []\nwhile True:\n    chunks.append(bytearray(32 * 1024**2))", 60
        )
        assert time.monotonic() - started < 20
        if eaten.status == "lost":
            assert "memory" in (eaten.error or "")
            assert not session.alive
        else:
            assert eaten.status == "error" and "MemoryError" in eaten.logs
            await run(session, "del chunks")
            await assert_works(session)
        assert_host_healthy()
    finally:
        await session.close()
    await assert_fresh_session_works(backend)


async def test_cpu_time_is_limited(canary_env: str) -> None:
    backend = LocalSandboxBackend(sandbox_config(cpu_time_s=3))
    try:
        session = await backend.start_session("thread_cpu")
        started = time.monotonic()
        result = await run(session, "while True:\n    pass", timeout_s=60)
        assert result.status == "lost" and time.monotonic() - started < 20
        assert "CPU time (3 s)" in (result.error or "")
        assert_host_healthy()
    finally:
        await backend.aclose()


async def test_infinite_loop_is_interrupted_and_state_kept(
    session: LocalSandboxSession,
) -> None:
    await run(session, "x = 41")
    started = time.monotonic()
    result = await run(session, "while True:\n    pass", timeout_s=1)
    assert result.status == "timeout" and time.monotonic() - started < 5
    assert "KeyboardInterrupt" in result.logs and "interrupted" in result.logs
    assert session.alive
    after = await run(session, "x + 1")
    assert after.logs == "42"


async def test_loop_ignoring_interrupts_is_killed_and_reported(
    backend: LocalSandboxBackend,
) -> None:
    session = await backend.start_session("thread_sigint")
    namespace = pid_namespace(kernel_pid(session))
    try:
        code = "import signal\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\nwhile True:\n    pass"
        started = time.monotonic()
        result = await run(session, code, timeout_s=1)
        elapsed = time.monotonic() - started
        assert result.status == "lost" and 1 + TEST_LIMITS.interrupt_grace_s <= elapsed < 10
        assert "[session lost:" in result.logs and "did not stop" in result.logs
        assert not session.alive and processes_in_namespace(namespace) == []
    finally:
        await session.close()
    await assert_fresh_session_works(backend)


async def test_huge_output_is_capped(session: LocalSandboxSession) -> None:
    started = time.monotonic()
    result = await run(session, "print('start')\nprint('y' * 100_000_000)\nprint('end')", 60)
    assert result.status == "ok" and result.truncated
    assert result.logs.startswith("start\nyyy")
    assert len(result.logs.encode()) <= TEST_LIMITS.max_output_bytes + 200
    assert "[output truncated" in result.logs and "end" not in result.logs
    assert time.monotonic() - started < 30
    # a huge last-expression value and too many images are capped too
    big = await run(session, "'z' * 50_000_000")
    assert big.truncated and len(big.logs.encode()) <= TEST_LIMITS.max_output_bytes + 200
    images = await run(
        session,
        "import matplotlib.pyplot as plt\n"
        f"for i in range({TEST_LIMITS.max_images + 2}):\n"
        "    plt.figure(figsize=(1, 1)); plt.plot([i, 1]); plt.show()",
        60,
    )
    assert len(images.images) == TEST_LIMITS.max_images and images.truncated
    assert "<Figure" not in images.logs and "images were dropped" in images.logs
    await assert_works(session)


async def test_disk_cannot_be_filled(session: LocalSandboxSession) -> None:
    code = (
        "import errno, os\nout = {}\n"
        "def fill(path, size):\n"
        "    try:\n"
        "        with open(path, 'wb') as f:\n"
        "            for _ in range(size // (1024 * 1024)):\n"
        "                f.write(b'0' * 1024 * 1024)\n"
        "        return 'written'\n"
        "    except OSError as e:\n"
        "        return errno.errorcode[e.errno]\n"
        f"out['one_big_file'] = fill('/mnt/data/big', {2 * TEST_LIMITS.max_file_mb} << 20)\n"
        "out['data'] = [fill(f'/mnt/data/part{i}', 15 << 20) for i in range(6)]\n"
        f"out['tmp'] = [fill(f'/tmp/part{{i}}', 15 << 20) for i in range(4)]\n"
        "for d in ('/mnt/data', '/tmp'):\n"
        "    for name in os.listdir(d):\n"
        "        if name.startswith(('part', 'big')):\n"
        "            os.remove(os.path.join(d, name))\n"
        "out"
    )
    out = await value(session, code)
    assert isinstance(out, dict)
    assert out["one_big_file"] == "EFBIG"
    assert "ENOSPC" in out["data"] and "ENOSPC" in out["tmp"]
    await assert_works(session)


# --- files going out ------------------------------------------------------------------------


async def test_symlinks_and_dotdot_cannot_leak_or_clobber_host_files(
    session: LocalSandboxSession, tmp_path: Path
) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("host secret")
    victim = tmp_path / "victim.txt"
    victim.write_text("untouched")
    code = (
        "import os\n"
        "os.makedirs('/mnt/data/real', exist_ok=True)\n"
        "open('/mnt/data/real/ok.txt', 'w').write('fine')\n"
        "os.symlink('/etc/passwd', '/mnt/data/passwd')\n"
        f"os.symlink({str(secret)!r}, '/mnt/data/secret')\n"
        f"os.symlink({str(victim)!r}, '/mnt/data/victim')\n"
        f"os.symlink({str(tmp_path)!r}, '/mnt/data/hostdir')\n"
        "os.symlink('/', '/mnt/data/root')\n"
        "os.symlink('real/ok.txt', '/mnt/data/relative')\n"
        "os.mkfifo('/mnt/data/fifo')\n"
        "'made'"
    )
    assert (await run(session, code)).logs == "'made'"
    try:
        listed = [f.path for f in await session.list_files()]
        assert listed == ["real/ok.txt"]  # regular files only: no link, no FIFO
        for path in [
            "passwd",
            "secret",
            "hostdir/secret.txt",
            "root/etc/passwd",
            "relative",
            "fifo",
            "../../etc/passwd",
            "real/../../etc/passwd",
            "/etc/passwd",
            "/mnt/data/../../etc/passwd",
            "",
            "real//ok.txt",
            "./real/ok.txt",
        ]:
            with pytest.raises(SandboxFileError):
                await asyncio.wait_for(session.read_file(path, max_bytes=10_000), 5)
        assert await session.read_file("real/ok.txt", max_bytes=100) == b"fine"
        with pytest.raises(SandboxFileError):
            await session.read_file("real/ok.txt", max_bytes=3)  # over the cap
        for bad in ["../x", "/etc/x", "a/../../x", "hostdir/x"]:
            with pytest.raises(SandboxFileError):
                await session.put_file(bad, b"pwned")
        # Writing where the code put a symlink replaces the link, never writes through it.
        await session.put_file("victim", b"pwned")
        assert victim.read_text() == "untouched" and secret.read_text() == "host secret"
        assert (await run(session, "import os; os.path.islink('/mnt/data/victim')")).logs == "False"
        assert await session.read_file("victim", max_bytes=100) == b"pwned"
    finally:
        await run(
            session,
            "import shutil, os\nfor n in os.listdir('/mnt/data'):\n"
            "    p = os.path.join('/mnt/data', n)\n"
            "    shutil.rmtree(p) if os.path.isdir(p) and not os.path.islink(p)"
            " else os.remove(p)",
        )
    assert await session.list_files() == []


# --- sessions -----------------------------------------------------------------------------


async def test_sessions_are_isolated_from_each_other(backend: LocalSandboxBackend) -> None:
    first = await backend.start_session("thread_a")
    second = await backend.start_session("thread_b")
    try:
        await first.put_file("mine.txt", b"a's data")
        setup = (
            "import socket\nsecret_a = 'only in a'\n"
            "s = socket.socket(socket.AF_UNIX); s.bind('\\0da-sandbox-test'); s.listen()\n"
            "open('/tmp/a.txt', 'w').write('a')\n'ready'"
        )
        assert (await run(first, setup)).logs == "'ready'"
        probe = (
            "import os, socket\nout = {}\n"
            "out['files'] = sorted(os.listdir('/mnt/data')) + sorted(os.listdir('/tmp'))\n"
            "out['var'] = 'secret_a' in globals()\n"
            "out['pids'] = sorted(p for p in os.listdir('/proc') if p.isdigit())\n"
            "out['sockets'] = sorted(os.listdir('/run/kernel'))\n"
            "c = socket.socket(socket.AF_UNIX)\n"
            "try:\n"
            "    c.connect('\\0da-sandbox-test'); out['abstract'] = 'CONNECTED'\n"
            "except OSError as e:\n"
            "    out['abstract'] = type(e).__name__\n"
            "out"
        )
        out = await value(second, probe)
        assert isinstance(out, dict)
        assert "mine.txt" not in out["files"] and "a.txt" not in out["files"]
        assert out["var"] is False and out["pids"] == ["1"]
        assert out["abstract"] == "ConnectionRefusedError"
        own = await value(first, "import os\nsorted(os.listdir('/run/kernel'))")
        assert own == out["sockets"]  # same names, but each sees only its own directory
        assert first.process_pid != second.process_pid
        assert pid_namespace(kernel_pid(first)) != pid_namespace(kernel_pid(second))
        assert await second.list_files() == []
    finally:
        await first.close()
        await second.close()


def test_sandbox_dies_with_its_worker(tmp_path: Path) -> None:
    """A worker killed with SIGKILL leaves no sandbox behind (the kernel's lifeline pipe)."""
    script = tmp_path / "worker.py"
    script.write_text(
        "import asyncio, dataclasses, sys\n"
        "from pathlib import Path\n"
        "from tests.support.sandbox import sandbox_config\n"
        "from assistants.sandbox import LocalSandboxBackend\n"
        "async def main():\n"
        f"    config = dataclasses.replace(sandbox_config(), runtime_dir=Path({str(tmp_path)!r}))\n"
        "    session = await LocalSandboxBackend(config).start_session('t')\n"
        "    print('KERNEL', session.kernel_pid, flush=True)\n"
        "    await asyncio.sleep(3600)\n"
        "asyncio.run(main())\n"
    )
    worker = subprocess.Popen(
        [sys.executable, str(script)],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert worker.stdout is not None
        line = ""
        while not line.startswith("KERNEL "):
            line = worker.stdout.readline()
            assert line, "the worker ended before starting its sandbox"
        pid = int(line.split()[1])
        namespace = pid_namespace(pid)
        assert processes_in_namespace(namespace) == [pid]
    finally:
        worker.send_signal(signal.SIGKILL)
        worker.wait()
    deadline = time.monotonic() + 10
    while processes_in_namespace(namespace) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert processes_in_namespace(namespace) == []
