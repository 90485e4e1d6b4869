"""A real PostgreSQL server for the test session: Debian's ``postgresql`` package.

``postgres_server`` starts one server for the whole session (``initdb`` and
``pg_ctl`` from ``/usr/lib/postgresql/<version>/bin``, installed by ``make
test``) and gives its base URL; ``postgres_url`` gives each test a fresh, empty
database on it, dropped afterwards. Both skip, saying why, when the server
binaries are not installed.

The server listens on 127.0.0.1 on a free port, its unix socket in its own
folder, so parallel test runs do not collide. Connections over TCP need the
password in the URL (SCRAM), as on a real deployment: tests that check
credentials are masked in messages see a real one. PostgreSQL refuses to run as
root, so under root the server runs as the ``postgres`` user (``runuser``).
Durability is off (``fsync``, ``synchronous_commit``): a crash loses nothing a
test cares about, and commits are much faster.
"""

from __future__ import annotations

import contextlib
import glob
import os
import secrets
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest
from support import free_port

PASSWORD_BYTES = 12


def _bin_dir() -> Path | None:
    """The newest installed PostgreSQL's binaries (``CONVEYOR_TEST_PG_BIN`` overrides)."""
    override = os.environ.get("CONVEYOR_TEST_PG_BIN")
    candidates = [override] if override else glob.glob("/usr/lib/postgresql/*/bin")
    found = [Path(c) for c in candidates if c and (Path(c) / "initdb").exists()]
    return (
        max(found, key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0)
        if found
        else None
    )


def _user_exists(name: str) -> bool:
    import pwd

    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


class PostgresServer:
    """One ``initdb``'d cluster in a temporary folder, started and stopped with ``pg_ctl``."""

    def __init__(self, bin_dir: Path) -> None:
        self.bin_dir = bin_dir
        self.root = Path(tempfile.mkdtemp(prefix="conveyor-pg-"))
        self.data = self.root / "data"
        self.log = self.root / "server.log"
        self.port = free_port()
        self.password = secrets.token_urlsafe(PASSWORD_BYTES)
        self.as_postgres = os.geteuid() == 0  # initdb and postgres refuse root

    @property
    def url(self) -> str:
        return f"postgresql://postgres:{self.password}@127.0.0.1:{self.port}/postgres"

    def _run(self, *args: str, timeout: float = 120) -> None:
        command = [str(self.bin_dir / args[0]), *args[1:]]
        if self.as_postgres:
            command = ["runuser", "-u", "postgres", "--", *command]
        done = subprocess.run(
            command, cwd=self.root, capture_output=True, text=True, timeout=timeout, check=False
        )
        if done.returncode != 0:
            log = self.log.read_text(errors="replace")[-2000:] if self.log.exists() else ""
            raise RuntimeError(
                f"{args[0]} failed ({done.returncode}): {done.stderr.strip()[-2000:]}\n{log}"
            )

    def start(self) -> None:
        pwfile = self.root / "pwfile"
        pwfile.write_text(self.password + "\n")
        if self.as_postgres:
            shutil.chown(self.root, "postgres", "postgres")
            shutil.chown(pwfile, "postgres", "postgres")
        self.root.chmod(0o700)
        self._run(
            "initdb",
            "-D",
            str(self.data),
            "-U",
            "postgres",
            "-E",
            "UTF8",
            "--locale=C",
            "--auth-local=trust",
            "--auth-host=scram-sha-256",
            f"--pwfile={pwfile}",
            "--no-sync",
        )
        pwfile.unlink()
        options = " ".join(
            [
                "-c listen_addresses=127.0.0.1",
                f"-c port={self.port}",
                f"-c unix_socket_directories={self.root}",
                "-c fsync=off",
                "-c synchronous_commit=off",
                "-c full_page_writes=off",
                "-c max_connections=200",
            ]
        )
        self._options = options
        self.resume()

    def resume(self) -> None:
        """Start the cluster again after :meth:`halt` (same port, same data)."""
        self._run(
            "pg_ctl",
            "-D",
            str(self.data),
            "-l",
            str(self.log),
            "-o",
            self._options,
            "-w",
            "-t",
            "60",
            "start",
        )

    def halt(self) -> None:
        """Stop the server, keeping its data: an outage (:meth:`resume` ends it)."""
        self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "-t", "30", "stop")

    def stop(self) -> None:
        with contextlib.suppress(Exception):
            self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "-t", "30", "stop")
        shutil.rmtree(self.root, ignore_errors=True)


def database_url(base: str, name: str) -> str:
    """``base`` with its database replaced by ``name``."""
    parts = urlsplit(base)
    return urlunsplit(parts._replace(path=f"/{name}"))


def _require_binaries() -> Path:
    bin_dir = _bin_dir()
    if bin_dir is None:
        pytest.skip(
            "PostgreSQL server binaries not found under /usr/lib/postgresql/*/bin "
            "(install the Debian package postgresql, as `make test` does)"
        )
    if os.geteuid() == 0 and not _user_exists("postgres"):
        pytest.skip("running as root, but there is no postgres user to run the server as")
    return bin_dir


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    """Base URL of a PostgreSQL server running for the whole session (superuser
    ``postgres``, database ``postgres``)."""
    server = PostgresServer(_require_binaries())
    try:
        server.start()
        yield server.url
    finally:
        server.stop()


@pytest.fixture
def own_postgres_server() -> Iterator[PostgresServer]:
    """A PostgreSQL server of this test's own, which it may :meth:`~PostgresServer.halt`
    and :meth:`~PostgresServer.resume` (an outage) without disturbing other tests."""
    server = PostgresServer(_require_binaries())
    try:
        server.start()
        yield server
    finally:
        server.stop()


@pytest.fixture
def postgres_url(postgres_server: str) -> Iterator[str]:
    """URL of a fresh, empty database on the session's server; dropped after the test
    (connections left open are ended)."""
    import psycopg

    name = f"test_{secrets.token_hex(6)}"
    with psycopg.connect(postgres_server, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield database_url(postgres_server, name)
    finally:
        with psycopg.connect(postgres_server, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
