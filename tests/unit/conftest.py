"""``tests/unit`` runs on fakes and local files only, in seconds: the fixtures that
start a server or load a real model are refused here, naming the tier to move the
test to (tests/integration). Overriding them covers ``request.getfixturevalue``
too, and every fixture built on them (``postgres_url``, ``s3_bucket``…)."""

from __future__ import annotations

import pytest

REFUSED = (
    "postgres_server",
    "own_postgres_server",
    "pgvector_server",
    "chroma_server",
    "moto_server",
    "real_embedder",
    "onnx_home",
)


def _refuse(name: str):  # type: ignore[no-untyped-def]
    @pytest.fixture(scope="session", name=name)
    def refused() -> None:
        pytest.fail(
            f"tests/unit starts no server and loads no real model: {name} is for "
            "tests/integration (move the test, or its server-backed parameters, there)",
            pytrace=False,
        )

    return refused


for _name in REFUSED:
    globals()[f"_refused_{_name}"] = _refuse(_name)
