"""A full disk (issue 20, item 9): ingest stops taking work, says which path is full and
fails instead of looping on tracebacks; once there is room, the next run finishes
everything, nothing lost. The disk is a small tmpfs (needs root and mount)."""

from __future__ import annotations

import logging
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from conveyor.app import Conveyor
from conveyor.exceptions import NoSpace
from conveyor.settings import Settings
from conveyor.testing import FakeEmbedder, prose


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1200k", "tmpfs", str(mount)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here (needs root): {done.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_a_full_disk_stops_ingest_with_its_path_and_loses_nothing(
    small_disk: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    for i in range(40):
        (docs / f"{i:02}.txt").write_text(prose(i, 1500))
    settings = Settings(home=small_disk / "home", chunk_size=60, chunk_overlap=10)
    outcome: list[BaseException | None] = []

    def ingest() -> None:
        try:
            with Conveyor(settings, embedder=FakeEmbedder()) as cv:
                cv.ingest([docs])
            outcome.append(None)
        except BaseException as exc:  # the test looks at it
            outcome.append(exc)

    with caplog.at_level(logging.WARNING):
        thread = threading.Thread(target=ingest, daemon=True)
        thread.start()
        thread.join(240)
    assert not thread.is_alive(), "ingest kept going on a full disk"
    [error] = outcome
    assert isinstance(error, NoSpace), error
    assert str(small_disk) in str(error) and "no space left" in str(error)
    tracebacks = [r for r in caplog.records if r.exc_info]
    assert len(tracebacks) <= 2, [r.getMessage() for r in tracebacks]

    subprocess.run(["mount", "-o", "remount,size=64m", str(small_disk)], check=True)
    with Conveyor(settings, embedder=FakeEmbedder()) as cv:
        cv.ingest([docs])
        counts = cv.status()["documents"]
        assert counts.get("done", 0) + counts.get("skipped", 0) == 40, counts
        assert counts.get("failed", 0) == 0
