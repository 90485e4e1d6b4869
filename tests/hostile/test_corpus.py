"""The hostile corpus in CI: each file ingested by a fresh worker process fails (or
passes) as :data:`hostile.CORPUS` says, with its reason, and never costs the worker
more than :data:`WORKER_GROWTH_MB` over its size before the file (the extraction child
has its own limit). Each row is printed to the log and recorded as JUnit properties:
outcome, reason, wall time, the worker's peak memory."""

from __future__ import annotations

from pathlib import Path

import pytest

from hostile import CORPUS, Hostile
from hostile.run import run

WORKER_GROWTH_MB = 300
"""The issue's bound: a worker's peak ≤ the extraction limit + the model + 300 MB. The
model is loaded before the file, so the growth is what the file costs the worker."""


@pytest.mark.slow
@pytest.mark.parametrize("hostile", CORPUS, ids=[h.name for h in CORPUS])
def test_hostile_file(
    hostile: Hostile,
    tmp_path: Path,
    record_property: pytest.RecordProperty,
    capsys: pytest.CaptureFixture[str],
) -> None:
    row = run(hostile, tmp_path)
    for name in ("outcome", "reason", "wall_s", "peak_rss_mb", "growth_mb"):
        record_property(name, getattr(row, name))
    with capsys.disabled():
        print(
            f"\n  hostile {row.name}: {row.outcome} in {row.wall_s:.2f} s, worker peak "
            f"{row.peak_rss_mb:.0f} MB (+{row.growth_mb:.0f}); {row.reason[:100]}"
        )
    assert row.outcome == hostile.outcome, row
    assert hostile.reason in row.reason, row
    assert row.growth_mb < WORKER_GROWTH_MB, row
