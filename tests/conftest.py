"""Shared fixtures: a clean environment for every test, the real models loaded once per
session, and (from tests/servers/) the real servers.

The tiers: ``tests/unit`` uses fakes and local files only (its conftest refuses the
server and model fixtures below); ``tests/integration`` uses the real model and
real servers; ``tests/acceptance`` runs the installed CLI.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

# the shared helpers and conformance suites are not test modules: rewrite their asserts too
pytest.register_assert_rewrite("support", "conformance")

# Fixtures that start real servers (PostgreSQL, Chroma, pgvector, moto) live in tests/servers/.
pytest_plugins = [
    "servers.postgres",
    "servers.chroma",
    "servers.pgvector",
    "servers.aws",
    "servers.providers",
    "servers.llm",
]

from support import conveyor_variables, onnx_settings  # noqa: E402 (after the assert rewriting above)


def _clear(patch: pytest.MonkeyPatch) -> None:
    for name in conveyor_variables():
        patch.delenv(name)


@pytest.fixture(scope="session", autouse=True)
def _no_settings_from_the_shell_for_the_session() -> Iterator[None]:
    """Session and module fixtures (a server's ``Settings()``) see no developer's settings."""
    with pytest.MonkeyPatch.context() as patch:
        _clear(patch)
        yield


@pytest.fixture(autouse=True)
def _no_settings_from_the_shell(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test starts without ``CONVEYOR_*`` and the aliases, whatever the shell that
    started pytest (or an earlier test that set one without monkeypatch) left behind;
    a test sets what it needs with ``monkeypatch.setenv``."""
    _clear(monkeypatch)


@pytest.fixture(scope="session")
def real_embedder():
    """The real all-MiniLM-L6-v2 (torch), loaded once for the whole session."""
    from conveyor.embedding.local import LocalEmbedder
    from conveyor.settings import DEFAULT_MODEL

    embedder = LocalEmbedder(DEFAULT_MODEL)
    embedder.load()
    return embedder


@pytest.fixture(scope="session")
def onnx_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A home whose models folder holds the ONNX export (fp32 and int8) of the default
    model, exported once for the session: ``onnx_folder(onnx_settings(onnx_home))``."""
    from conveyor.app import onnx_folder
    from conveyor.embedding.onnx import export
    from conveyor.settings import DEFAULT_MODEL

    home = tmp_path_factory.mktemp("onnx-home")
    export(DEFAULT_MODEL, onnx_folder(onnx_settings(home)), int8=True)
    return home


def _onnx(home: Path, *, int8: bool) -> Iterator[object]:
    from conveyor.app import onnx_folder
    from conveyor.embedding.onnx import OnnxEmbedder
    from conveyor.settings import DEFAULT_MODEL

    embedder = OnnxEmbedder(DEFAULT_MODEL, onnx_folder(onnx_settings(home)), int8=int8)
    embedder.load()
    yield embedder
    embedder.close()


@pytest.fixture(scope="session")
def onnx_fp32(onnx_home: Path) -> Iterator[object]:
    """The default model on ONNX Runtime, fp32, loaded once for the session."""
    yield from _onnx(onnx_home, int8=False)


@pytest.fixture(scope="session")
def onnx_int8(onnx_home: Path) -> Iterator[object]:
    """The default model on ONNX Runtime, int8, loaded once for the session."""
    yield from _onnx(onnx_home, int8=True)


@pytest.fixture(scope="session")
def openvino_int8(onnx_home: Path) -> Iterator[object]:
    """The default model on OpenVINO, NNCF int8 (the default backend, quantised into the
    session's ONNX home), loaded once for the session."""
    from conveyor.app import onnx_folder
    from conveyor.embedding.openvino import OpenVinoEmbedder
    from conveyor.settings import DEFAULT_MODEL

    embedder = OpenVinoEmbedder(DEFAULT_MODEL, onnx_folder(onnx_settings(onnx_home)))
    embedder.load()
    yield embedder
    embedder.close()


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path / "home"
