"""Document histories on a PostgreSQL schema from before they were kept: opening the
catalog adds the events table, and moves are recorded from then on."""

from __future__ import annotations

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
