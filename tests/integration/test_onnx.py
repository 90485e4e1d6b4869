"""ONNX Runtime backends (fp32, int8) against the torch model they were exported from:
accuracy over many texts, the graph, re-exports, and the pipeline on int8. The
Embedder contract itself is checked in test_embedder_conformance.py."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from support import onnx_settings, wait_for

from conveyor.app import Conveyor, onnx_folder
from conveyor.embedding import INT8
from conveyor.embedding.onnx import FORMAT, MARKER, OnnxEmbedder, is_current
from conveyor.server.embed import create_app
from conveyor.settings import DEFAULT_MODEL, Settings
from conveyor.testing import prose

TEXTS = [" ".join(prose(i, 220).split()[:220]) for i in range(24)] + ["short", "two words"]


@pytest.fixture
def exported(onnx_home: Path) -> Path:
    """The session's home with the ONNX export (conftest: exported once)."""
    return onnx_home


@pytest.mark.parametrize(
    ("model", "mean", "low"), [("onnx_fp32", 0.999, 0.995), ("onnx_int8", 0.99, 0.97)]
)
def test_onnx_matches_torch(
    request: pytest.FixtureRequest, real_embedder, model: str, mean: float, low: float
) -> None:
    onnx = request.getfixturevalue(model)
    cosine = np.sum(onnx.embed(TEXTS) * real_embedder.embed(TEXTS), axis=1)
    assert cosine.mean() >= mean and cosine.min() >= low, (cosine.mean(), cosine.min())
    assert onnx.model_id.removesuffix(INT8) == real_embedder.model_id and onnx.dim == 384
    assert onnx.model_id.endswith(INT8) == (model == "onnx_int8")  # int8 is another space


def test_graph_has_no_nan_masking_pass_and_int8_keeps_attention_fp32(exported: Path) -> None:
    import onnx

    folder = onnx_folder(onnx_settings(exported))
    fp32 = Counter(n.op_type for n in onnx.load(str(folder / "model.onnx")).graph.node)
    assert fp32["IsNaN"] == 0 and fp32["MatMul"] == 48  # eager attention, 6 layers x 8
    int8 = Counter(n.op_type for n in onnx.load(str(folder / "model-int8.onnx")).graph.node)
    assert int8["MatMulInteger"] == 36 and int8["MatMul"] == 12  # weights int8, QK and PV fp32


def test_an_export_of_another_format_is_redone(exported: Path, tmp_path: Path) -> None:
    folder = onnx_folder(onnx_settings(exported))
    assert is_current(folder, "model-int8.onnx")
    marker = json.loads((folder / MARKER).read_text())
    assert marker["format"] == FORMAT and "model-int8.onnx" in marker["files"]
    old = tmp_path / "old"
    old.mkdir()
    (old / "model.onnx").write_bytes((folder / "model.onnx").read_bytes())
    assert not is_current(old, "model.onnx")  # an export from before the marker
    (old / MARKER).write_text(json.dumps({**marker, "format": FORMAT - 1}))
    assert not is_current(old, "model.onnx")
    onnx = OnnxEmbedder(DEFAULT_MODEL, old, int8=False)
    assert onnx.embed(["penguins"]).shape == (1, 384)  # loading exported it again
    assert json.loads((old / MARKER).read_text())["format"] == FORMAT


def test_ingest_and_serve_with_int8(exported: Path, tmp_path: Path) -> None:
    settings = Settings(  # the session's export, read only: this test's own home
        home=tmp_path / "home", models_dir=exported / "models", embedding_backend="onnx-int8"
    )
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "a.txt").write_text("Penguins huddle together through the Antarctic winter.")
    (docs / "b.txt").write_text("The bakery sells sourdough bread every morning.")
    with Conveyor(settings) as cv:
        assert cv.ingest([docs]).done == 2
        assert cv.search("birds in the cold", k=1)[0].source.endswith("a.txt")
        doc = cv.documents(state="done")[0]
        assert doc["model"] == DEFAULT_MODEL + INT8
    with TestClient(create_app(settings)) as client:
        wait_for(lambda: client.get("/health").status_code == 200, 60, "the model", every=0.1)
        assert client.get("/health").json()["backend"] == "onnx-int8"
