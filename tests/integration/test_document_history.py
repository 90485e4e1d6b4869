"""Document histories on a PostgreSQL schema from before they were kept: opening the
catalog adds the events table, and moves are recorded from then on."""

from __future__ import annotations

from typing import Any

from servers.aws import REGION, unique_name

from conveyor.catalog import open_catalog
from conveyor.documents import Documents


def test_an_older_postgres_schema_gets_the_events_table(postgres_url: str) -> None:
    import psycopg

    catalog = open_catalog(postgres_url)
    catalog.enqueued([("d", "c", "file:///d")], "r")
    catalog.close()
    with psycopg.connect(postgres_url, autocommit=True) as conn:  # as an older conveyor left it
        conn.execute("DROP TABLE conveyor.document_events")

    catalog = open_catalog(postgres_url)
    Documents(catalog).started("d", "queued", attempts=1)
    assert [(e["from_state"], e["to_state"], e["attempt"]) for e in catalog.events("d")] == [
        ("queued", "running", 1)
    ]
    catalog.close()


def test_dynamodb_moves_again_when_another_host_moved_the_document_first(
    moto_server: str,
) -> None:
    """Between a move's read and its write another host moves the document: the write's
    condition fails, the move reads again and records the true from-state."""
    first = open_catalog(f"dynamodb://{unique_name('history')}?region={REGION}")
    second = open_catalog(f"dynamodb://{first.prefix}?region={REGION}")  # type: ignore[attr-defined]
    Documents(first).queued([("d", "c", "file:///d")], "r")
    client = first._client  # type: ignore[attr-defined]
    real_get, reads = client.get_item, []

    def get_item(**kw: Any) -> Any:
        found = real_get(**kw)
        reads.append(kw["TableName"])
        if len(reads) == 1:  # the other host moves it now, after this read
            Documents(second).started("d", "queued", attempts=1)
        return found

    client.get_item = get_item
    try:
        Documents(first).failed("d", "disk full", "transient")
    finally:
        client.get_item = real_get
    assert len(reads) == 2  # read again after the condition failed
    assert [(e["from_state"], e["to_state"]) for e in first.events("d")] == [
        (None, "queued"),
        ("queued", "running"),
        ("running", "failed"),
    ]
    first.close()
    second.close()
