"""A libpq keyword string given as a queue, catalog or vector store URL is refused, not
taken for a SQLite file named after it, password and all (issue 20, item 10)."""

from __future__ import annotations

from pathlib import Path

import pytest

from conveyor.app import Conveyor
from conveyor.catalog import open_catalog
from conveyor.exceptions import ConfigurationError
from conveyor.queue import open_queue
from conveyor.settings import Settings
from conveyor.vectorstore import open_vectorstore

DSN = "host=db.example port=5432 user=conveyor password=s3cret dbname=jobs"


@pytest.mark.parametrize("opener", [open_queue, open_catalog, open_vectorstore])
@pytest.mark.parametrize("url", [DSN, f"sqlite://{DSN}"])
def test_a_keyword_dsn_is_refused_and_writes_no_file(
    opener, url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigurationError) as caught:
        opener(url)
    message = str(caught.value)
    assert "postgresql://user:password@host" in message and "'='" in message
    assert "s3cret" not in message
    assert list(tmp_path.iterdir()) == []


def test_serve_and_ingest_refuse_it_at_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    with Conveyor(Settings(home=tmp_path / "home", queue_url=DSN)) as cv:
        with pytest.raises(ConfigurationError, match="libpq keyword string"):
            cv.components.open_all()
    assert not any("password" in p.name for p in tmp_path.rglob("*"))


def test_plain_paths_still_work(tmp_path: Path) -> None:
    open_queue(str(tmp_path / "q.db")).close()
    open_catalog(f"sqlite://{tmp_path / 'c.db'}").close()
    assert (tmp_path / "q.db").exists() and (tmp_path / "c.db").exists()
