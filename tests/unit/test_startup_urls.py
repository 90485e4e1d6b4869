"""A wrong or unreachable backend URL stops a long-running command at start-up, naming
the URL with its password masked — not a worker that idles or retries forever."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from conveyor.cli import main

CASES = [
    ("CONVEYOR_QUEUE_URL", "postgresql://bob:s3cret@127.0.0.1:1/db", "127.0.0.1:1/db"),
    ("CONVEYOR_CATALOG_URL", "postgresql://bob:s3cret@127.0.0.1:1/db", "127.0.0.1:1/db"),
    ("CONVEYOR_VECTORS_URL", "chroma+http://127.0.0.1:1", "chroma+http://127.0.0.1:1"),
    ("CONVEYOR_VECTORS_URL", "weird://bob:s3cret@x", "weird://bob:***@x"),
    ("CONVEYOR_QUEUE_URL", "rabbit://bob:s3cret@x/q", "rabbit://bob:***@x/q"),
]


@pytest.mark.parametrize("command", [["worker", "--exit-when-idle"], ["compactor"]])
@pytest.mark.parametrize(("variable", "url", "shown"), CASES)
def test_bad_url_fails_at_start_naming_it(
    tmp_path: Path, command: list[str], variable: str, url: str, shown: str
) -> None:
    result = CliRunner().invoke(
        main, [*command, "--home", str(tmp_path / "home")], env={variable: url}
    )
    assert result.exit_code == 2, result.output
    assert shown in result.output
    assert "s3cret" not in result.output
