"""The compactor's writer lock is renewed from a thread while a merge runs: a write that
takes longer than the lease keeps the lock, and a lock taken over is noticed."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from conveyor import compactor
from conveyor.catalog import SqliteCatalog


@pytest.fixture
def catalog(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> SqliteCatalog:
    monkeypatch.setattr(compactor, "LOCK_TTL", 0.4)
    return SqliteCatalog(tmp_path / "catalog.db")


def test_a_merge_longer_than_the_lease_keeps_the_lock(catalog: SqliteCatalog) -> None:
    assert catalog.acquire_lock("compactor:c", "a", 0.4)
    with compactor._LockKeeper(catalog, "compactor:c", "a") as keeper:
        time.sleep(1.2)  # three leases long
        assert not catalog.acquire_lock("compactor:c", "b", 0.4)
        assert not keeper.lost.is_set()
    time.sleep(0.5)  # no longer renewed: the lease runs out
    assert catalog.acquire_lock("compactor:c", "b", 0.4)


def test_a_lock_taken_over_is_noticed(catalog: SqliteCatalog) -> None:
    assert catalog.acquire_lock("compactor:c", "a", 0.4)
    with compactor._LockKeeper(catalog, "compactor:c", "a") as keeper:
        catalog.release_lock("compactor:c", "a")  # as if the lease had run out…
        assert catalog.acquire_lock("compactor:c", "b", 60)  # …and another writer took it
        assert keeper.lost.wait(1.0)
