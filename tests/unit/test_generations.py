"""Generations: how a name resolves and where the compactor routes a delta (the
end-to-end rebuild on real stores is tests/acceptance/test_reindex.py)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from conveyor import deltas
from conveyor.blobstore.local import LocalBlobStore
from conveyor.exceptions import ConveyorError
from conveyor.generations import Generations, Lineage, physical


def _header(read_at: float, model: str = "new") -> deltas.Header:
    [(_, tombstone)] = deltas.tombstone("file:///a.txt", "run", read_at, ["docs"])
    return replace(tombstone, deleted=False, model=model)


@pytest.fixture
def generations(tmp_path: Path) -> Generations:
    return Generations(LocalBlobStore(tmp_path), ttl=0)


def test_a_collection_never_rebuilt_is_itself(generations: Generations) -> None:
    assert generations.resolve("docs") == "docs" == generations.target("docs")
    assert generations.targets("docs_lines", _header(1.0)) == ["docs_lines"]
    assert physical("docs", 0) == "docs" and physical("docs", 3) == "docs__g3"


def test_deltas_are_routed_by_when_their_source_was_read(generations: Generations) -> None:
    generations.begin("docs", model="new", run="r", started=100.0, documents=2)
    assert generations.resolve("docs") == "docs"  # the old one answers meanwhile
    assert generations.resolve("docs_lines") == "docs_lines"
    assert generations.target("docs_pages") == "docs__g1_pages"
    assert generations.targets("docs", _header(99.0, model="old")) == ["docs"]
    assert generations.targets("docs", _header(101.0)) == ["docs__g1"]
    assert generations.targets("docs_lines", _header(101.0)) == ["docs__g1_lines"]
    gone = replace(_header(101.0, model=""), deleted=True)
    assert generations.targets("docs", gone) == ["docs", "docs__g1"]
    with pytest.raises(ConveyorError, match="restart the workers"):
        generations.targets("docs", _header(101.0, model="old"))
    with pytest.raises(ConveyorError, match="being built already"):
        generations.begin("docs", model="newer", run="r2", started=200.0, documents=2)
    # an unrelated collection whose name merely ends like a unit is its own
    assert generations.resolve("notes_lines") == "notes_lines"


def test_the_record_round_trips_and_numbers_only_grow(generations: Generations) -> None:
    lineage = Lineage("docs", active=2, model="m", retired=(0, 1), dropping=(1,))
    assert Lineage.from_dict(lineage.as_dict()) == lineage
    generations._write(lineage)
    begun = generations.begin("docs", model="n", run="r", started=1.0, documents=1)
    assert begun.building is not None and begun.building.number == 3
    assert begun.as_dict()["building"]["name"] == "docs__g3"
    assert generations.resolve("docs") == "docs__g2"
    assert generations.building() == ["docs"]


def test_records_keep_their_ids_in_their_own_collection_only() -> None:
    import numpy as np

    from conveyor.vectorstore import ChunkRecord

    records = [
        ChunkRecord(
            id=f"c{i}", document_id="d", chunk_index=i, text="t", source="s",
            page=None, metadata={}, vector=np.zeros(2, np.float32),
        )
        for i in range(2)
    ]  # fmt: skip
    assert Generations.records_in(records, "docs", "docs") is records
    moved = Generations.records_in(records, "docs__g1", "docs")
    again = Generations.records_in(records, "docs__g1", "docs")
    other = Generations.records_in(records, "docs__g2", "docs")
    assert [r.id for r in moved] == [r.id for r in again]  # stable: a replay overwrites
    assert not {r.id for r in moved} & ({r.id for r in records} | {r.id for r in other})
    assert [r.chunk_index for r in moved] == [0, 1] and records[0].id == "c0"


def test_a_fresh_resolve_sees_a_switch_a_cached_one_has_not_yet(tmp_path: Path) -> None:
    writer = Generations(LocalBlobStore(tmp_path), ttl=0)
    reader = Generations(LocalBlobStore(tmp_path), ttl=3600)  # another process, caching
    assert reader.resolve("docs_pages") == "docs_pages"
    writer._write(Lineage("docs", active=1, model="m", retired=(0,)))
    assert reader.resolve("docs_pages") == "docs_pages"  # its copy, until the ttl
    assert reader.resolve("docs_pages", fresh=True) == "docs__g1_pages"
