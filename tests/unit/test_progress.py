"""`conveyor ingest`'s progress: off a terminal, a line every few seconds, and the
run's counts (a query over its documents) read only when a line is due."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from conveyor.cli.ingest import LINE_EVERY_SECONDS, Progress


class Counting:
    def __init__(self) -> None:
        self.reads = 0

    def counts(self, *, run: str) -> dict[str, int]:
        self.reads += 1
        return {"done": 3, "skipped": 1, "failed": 0, "queued": 6, "running": 0}


def test_off_a_terminal_counts_are_read_only_when_a_line_is_due(
    capsys: pytest.CaptureFixture[str],
) -> None:
    catalog = Counting()
    progress = Progress(SimpleNamespace(components=SimpleNamespace(catalog=catalog)), quiet=False)
    assert not progress.console.is_terminal
    tick = progress.start(SimpleNamespace(run="r", jobs=10))
    for _ in range(50):  # the runner ticks five times a second
        tick()
    assert catalog.reads == 0 and capsys.readouterr().err == ""
    progress.last_line -= LINE_EVERY_SECONDS  # a line is due
    tick()
    tick()
    assert catalog.reads == 1
    err = capsys.readouterr().err
    assert err.count("ingest: 4/10") == 1 and "done 3 · unchanged 1" in err
    progress.close()
    assert catalog.reads == 1
