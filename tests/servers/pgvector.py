"""A real PostgreSQL 16 with pgvector for the session, from the PyPI package ``pgserver``.

Debian's PostgreSQL has no pgvector; ``pgserver`` bundles PostgreSQL 16 with
it. ``pgvector_server`` runs one in a temporary folder, listening on a Unix
socket in that folder only (no TCP port to collide on), and yields its
``pgvector+postgresql://postgres:@/postgres?host=<folder>`` URL; the server is
stopped and the folder deleted at the end. ``pgvector_url`` gives each test a
fresh database on it (``database_url`` makes such URLs).

Run as root, ``pgserver`` cannot start PostgreSQL (which refuses root), so it
creates a system user ``pgserver`` (``useradd``), hands the data folder to it
and runs ``initdb``/``pg_ctl`` as that user; it also makes the folders above
the data folder and its own binaries readable by others. Hence the data folder
is a fresh ``mkdtemp`` under the system temp dir rather than pytest's private
(0700) tree.
"""

from __future__ import annotations

import shutil
import tempfile
import uuid
import warnings
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest


def database_url(server_url: str, database: str) -> str:
    """``server_url`` with another database name (its path) in it."""
    return urlsplit(server_url)._replace(path=f"/{database}").geturl()


@pytest.fixture(scope="session")
def pgvector_server() -> Iterator[str]:
    with warnings.catch_warnings():
        # platformdirs warns on import when XDG_RUNTIME_DIR is unset (root, containers)
        warnings.simplefilter("ignore")
        try:
            import pgserver
        except ImportError:
            pytest.skip("no pgvector server: pip install pgserver")
    folder = tempfile.mkdtemp(prefix="conveyor-pgvector-")
    try:
        server = pgserver.get_server(folder, cleanup_mode="delete")
    except Exception:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    try:
        yield "pgvector+" + server.get_uri()
    finally:
        server.cleanup()
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def pgvector_url(pgvector_server: str) -> Iterator[str]:
    """``pgvector+postgresql://…`` of a database made for this test, dropped after."""
    import psycopg

    admin = pgvector_server.removeprefix("pgvector+")
    name = f"test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    yield database_url(pgvector_server, name)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
