"""The test harness itself: no setting from the developer's shell reaches a test,
and ``tests/unit`` cannot start a server or load the real model."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from support import conveyor_variables

ROOT = Path(__file__).resolve().parents[2]

SHELL = {
    "CONVEYOR_HOME": "/nonexistent/from-the-shell",
    "CONVEYOR_CHUNK_SIZE": "17",
    "CONVEYOR_MODEL": "someone/else",
    "CONVEYOR_QUEUE_URL": "postgresql://dev:secret@db.example/queue",
    "CONVEYOR_LOG_FORMAT": "json",
    "EMBEDDING_SERVICE_URL": "http://127.0.0.1:9",
    "CHUNK_SIZE_DOC_SPLIT": "33",
    "OVERLAP_FOR_DOC_SPLIT": "3",
    "INPUT_JSON": '{"FileURI": "s3://b/k.pdf"}',
}
"""What a developer's shell might hold: every one of these changes what conveyor does."""


def test_a_test_sees_no_setting() -> None:
    """Run in a new pytest by the test below, so it imports nothing of conveyor: quick."""
    leaked = conveyor_variables()
    assert not leaked, f"reached the test: {' '.join(leaked)}"


def test_a_test_gets_the_default_settings() -> None:
    from conveyor.settings import Settings

    settings = Settings()
    defaults = {name: field.get_default() for name, field in Settings.model_fields.items()}
    assert {name: getattr(settings, name) for name in defaults} == defaults


def test_the_shells_settings_would_change_conveyor(monkeypatch: pytest.MonkeyPatch) -> None:
    """The variables the next test sets in pytest's own environment do matter."""
    from conveyor.settings import Settings

    for name, value in SHELL.items():
        monkeypatch.setenv(name, value)
    assert conveyor_variables() == sorted(SHELL)
    settings = Settings()
    assert (str(settings.home), settings.chunk_size, settings.model) == (
        SHELL["CONVEYOR_HOME"],
        17,
        "someone/else",
    )
    assert settings.embedding_url == SHELL["EMBEDDING_SERVICE_URL"]


def test_the_shells_settings_do_not_reach_a_test() -> None:
    """pytest started from a shell holding :data:`SHELL` (and a test knob, which is
    kept): the first test above sees none of them, and fails without the conftest."""
    env = {**os.environ, **SHELL, "CONVEYOR_TEST_PG_BIN": "/usr/lib/postgresql/16/bin"}
    assert conveyor_variables(env) == sorted(SHELL)
    node = f"{Path(__file__).relative_to(ROOT)}::test_a_test_sees_no_setting"
    # no plugin is loaded by itself (hypothesis' and schemathesis' take seconds to
    # import) but pytest-timeout, which the configuration uses
    env["PYTEST_DISABLE_PLUGIN_AUTOLOAD"] = "1"
    command = [sys.executable, "-m", "pytest", node, "-q", "-p", "no:cacheprovider"]
    command += ["-p", "pytest_timeout"]
    bare = {**env, "PYTHONPATH": str(ROOT / "tests")}  # what the conftest also provides
    runs = [
        subprocess.Popen(command + extra, cwd=ROOT, env=e, stdout=subprocess.PIPE, text=True)
        for extra, e in (([], env), (["--noconftest"], bare))
    ]
    (with_conftest, _), (without, _) = (run.communicate(timeout=120) for run in runs)
    assert runs[0].returncode == 0, with_conftest[-3000:]
    assert "1 passed" in with_conftest
    assert runs[1].returncode == 1, without[-3000:]
    assert f"reached the test: {' '.join(sorted(SHELL))}" in without


@pytest.mark.parametrize(
    "fixture",
    ["postgres_url", "pgvector_url", "chroma_url", "s3_bucket", "real_embedder", "onnx_int8"],
)
def test_unit_tests_start_no_server_and_load_no_model(
    request: pytest.FixtureRequest, fixture: str
) -> None:
    with pytest.raises(pytest.fail.Exception, match="tests/unit starts no server"):
        request.getfixturevalue(fixture)
