"""The Dockerfile and compose.yaml cannot be built here (no Docker engine): keep them in
step with what is built and tested — the Makefile's install, the CLI, the settings."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import yaml

from conveyor.cli import main
from conveyor.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
TEST_ONLY_EXTRAS = {"dev"}
TEST_ONLY_APT = {"espeak-ng", "postgresql", "chromium", "chromium-driver"}


def _make_var(name: str) -> str:
    text = (ROOT / "Makefile").read_text().replace("\\\n", " ")
    match = re.search(rf"^{name}\s*\?=\s*(.+)$", text, re.M)
    assert match, f"{name} not in the Makefile"
    return match.group(1).strip()


def _dockerfile() -> str:
    return (ROOT / "Dockerfile").read_text()


def test_dockerfile_installs_the_makefiles_extras_but_the_test_ones() -> None:
    extras = set(_make_var("EXTRAS").split(","))
    found = re.findall(r'pip install "\.\[([a-z0-9,]+)\]"', _dockerfile())
    assert len(found) == 1
    assert set(found[0].split(",")) == extras - TEST_ONLY_EXTRAS
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert extras <= set(declared["optional-dependencies"])


def test_dockerfile_pins_the_same_torch_and_debian_packages() -> None:
    assert f'"{_make_var("TORCH")}"' in _dockerfile()
    apt = set(_make_var("APT_PACKAGES").split())
    block = re.search(r"install -y --no-install-recommends\s+\\\n(.+?)\\\n", _dockerfile(), re.S)
    assert block
    assert set(block.group(1).split()) == apt - TEST_ONLY_APT


def test_the_image_exports_the_model_where_its_processes_look() -> None:
    """Built into the folder ``CONVEYOR_MODELS_DIR`` names at run time, not into the
    build user's cache (the image's user could not export it again)."""
    text = _dockerfile()
    env = re.search(r"^ENV CONVEYOR_MODELS_DIR=(\S+)$", text, re.M)
    export = re.search(r"^RUN .*conveyor models export.*$", text, re.M)
    assert env and export, "the Dockerfile exports the model and names its folder"
    assert env.start() < export.start() or f"CONVEYOR_MODELS_DIR={env.group(1)}" in export.group(0)


def test_compose_runs_real_commands_with_real_settings() -> None:
    compose = yaml.safe_load((ROOT / "compose.yaml").read_text())
    commands = set(main.commands)  # type: ignore[attr-defined]
    fields = {f"CONVEYOR_{name.upper()}" for name in Settings.model_fields}
    fields |= {"CONVEYOR_EMBEDDING_URL", "CONVEYOR_LOG_FORMAT"}
    seen = set()
    for name, service in compose["services"].items():
        if service.get("image", "").startswith("conveyor"):
            command = service["command"][0]
            assert command in commands, f"{name}: no such command {command!r}"
            seen.add(command)
            for var in service.get("environment", {}):
                assert var in fields, f"{name}: {var} is not a setting"
    assert {"worker", "serve", "embed-server"} <= seen
    assert "run-job" in commands  # the Step Functions / ECS RunTask entry point
