"""Shared fixtures: one real model per test session, generated documents."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

# Fixtures that start real servers (PostgreSQL, Chroma, pgvector, moto) live in tests/servers/.
pytest_plugins = ["servers.postgres", "servers.chroma", "servers.pgvector", "servers.aws"]


@pytest.fixture(scope="session")
def real_embedder():
    """The real all-MiniLM-L6-v2, loaded once for the whole session."""
    from conveyor.embedding.local import LocalEmbedder
    from conveyor.settings import DEFAULT_MODEL

    embedder = LocalEmbedder(DEFAULT_MODEL)
    embedder.load()
    return embedder


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path / "home"
