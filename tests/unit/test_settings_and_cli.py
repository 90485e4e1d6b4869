"""Settings from the environment, and a help text with an example on every command."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from conveyor.cli import main
from conveyor.settings import Settings


def test_env_names_honoured(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHUNK_SIZE_DOC_SPLIT", "120")
    monkeypatch.setenv("OVERLAP_FOR_DOC_SPLIT", "20")
    monkeypatch.setenv("CONVEYOR_HOME", "/tmp/somewhere")
    s = Settings()
    assert (s.chunk_size, s.chunk_overlap, str(s.home)) == (120, 20, "/tmp/somewhere")
    monkeypatch.setenv("CONVEYOR_CHUNK_SIZE", "90")
    assert Settings().chunk_size == 90


def test_overlap_must_be_below_size(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONVEYOR_CHUNK_SIZE", "50")
    monkeypatch.setenv("CONVEYOR_CHUNK_OVERLAP", "50")
    with pytest.raises(ValueError, match="overlap"):
        Settings()


def test_bad_setting_is_a_clear_cli_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONVEYOR_CHUNK_SIZE", "lots")
    result = CliRunner().invoke(main, ["status", "--home", "/tmp/x"])
    assert result.exit_code == 2
    assert "invalid setting" in result.output


def test_every_command_has_help_with_an_example() -> None:
    import click

    runner = CliRunner()

    def leaves(group: click.Group, prefix: list[str]):
        for name, command in group.commands.items():
            if isinstance(command, click.Group):
                yield from leaves(command, [*prefix, name])
            yield [*prefix, name], command

    commands = list(leaves(main, []))
    assert len(commands) >= 10
    for path, command in commands:
        result = runner.invoke(main, [*path, "--help"])
        assert result.exit_code == 0, path
        assert "Example" in result.output, path
        if not isinstance(command, click.Group):
            assert "--home" in result.output, path


def test_log_lines_carry_their_fields() -> None:
    import json
    import logging

    from conveyor.logs import JsonFormatter, KeyValueFormatter

    record = logging.LogRecord(
        "conveyor.worker", logging.INFO, __file__, 1, "job failed: %s", ("boom",), None
    )
    record.job = "j1"
    record.document = "d1"
    line = KeyValueFormatter("%(message)s").format(record)
    assert line == "job failed: boom job=j1 document=d1"
    data = json.loads(JsonFormatter().format(record))
    assert (data["message"], data["job"], data["document"]) == ("job failed: boom", "j1", "d1")
