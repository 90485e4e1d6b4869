"""The OpenVINO int8 backend (the default): the model NNCF quantises, its own vector
space, what a user without OpenVINO is told, and ``conveyor models export``. Its
vectors against fp32's are in test_quality_gate.py, the Embedder contract in
test_embedder_conformance.py."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from support import onnx_settings

from conveyor.app import Conveyor, onnx_folder
from conveyor.cli import main
from conveyor.components import Components
from conveyor.embedding import OV_INT8
from conveyor.embedding.onnx import FORMAT as ONNX_FORMAT
from conveyor.embedding.openvino import FILE, FORMAT, MARKER, OpenVinoEmbedder, is_quantised
from conveyor.exceptions import ConfigurationError, ConveyorError
from conveyor.settings import DEFAULT_MODEL, Settings
from conveyor.testing import prose


def test_without_openvino_the_error_says_how_to_install_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "openvino", None)  # import openvino fails
    model = OpenVinoEmbedder(DEFAULT_MODEL, tmp_path / "models")
    with pytest.raises(ConfigurationError, match=r"pip install openvino nncf"):
        model.load()
    assert not (tmp_path / "models").exists()  # nothing exported for a backend that cannot run


def test_its_vectors_are_another_space(openvino_int8, onnx_home: Path) -> None:
    settings = onnx_settings(onnx_home, embedding_backend="openvino-int8")
    model = Components(settings).local_embedder
    assert isinstance(model, OpenVinoEmbedder) and model.backend == "openvino-int8"
    assert openvino_int8.model_id == model.model_id == DEFAULT_MODEL + OV_INT8
    texts = [" ".join(prose(i, 220).split()[:220]) for i in range(6)] + ["short"]
    vectors = openvino_int8.embed(texts)
    assert vectors.shape == (7, 384) and np.allclose(np.linalg.norm(vectors, axis=1), 1)
    alone = openvino_int8.embed(texts[-1:])  # scales fixed at calibration: batch-independent
    assert float(alone[0] @ vectors[-1]) >= 0.999


def test_a_stale_marker_is_not_taken(openvino_int8, onnx_home: Path) -> None:
    folder = onnx_folder(onnx_settings(onnx_home))
    marker = json.loads((folder / MARKER).read_text())
    assert is_quantised(folder) and (folder / FILE).exists()
    assert (marker["format"], marker["onnx_format"]) == (FORMAT, ONNX_FORMAT)
    for stale in ({"format": FORMAT - 1}, {"onnx_format": ONNX_FORMAT - 1}):
        (folder / MARKER).write_text(json.dumps({**marker, **stale}))
        assert not is_quantised(folder)
    (folder / MARKER).write_text(json.dumps(marker))
    assert is_quantised(folder)


def test_a_collection_of_openvino_vectors_refuses_onnx_int8(
    openvino_int8, onnx_home: Path, tmp_path: Path
) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "a.txt").write_text("Penguins huddle together through the Antarctic winter.")
    models = onnx_home / "models"
    ov = Settings(home=tmp_path / "home", models_dir=models, embedding_backend="openvino-int8")
    with Conveyor(ov) as cv:
        assert cv.ingest([docs]).done == 1
        assert cv.status()["collections"][0]["model"] == DEFAULT_MODEL + OV_INT8
        [own] = cv.search("birds in the cold", k=1)
    int8 = ov.model_copy(update={"embedding_backend": "onnx-int8"})
    with Conveyor(int8) as cv:
        [hit] = cv.search("birds in the cold", k=1)  # with the collection's own model
        assert hit.id == own.id and hit.score == pytest.approx(own.score, abs=1e-5)
        with pytest.raises(ConveyorError, match="CONVEYOR_EMBEDDING_BACKEND=openvino-int8"):
            cv.ingest([docs], force=True)


def test_calls_are_padded_to_few_shapes(openvino_int8) -> None:
    """OpenVINO keeps kernels per input shape: widths go up to a multiple of 32 tokens
    and rows to a power of two, and the padding changes no text's vector."""
    assert openvino_int8._shape(3, 40) == (4, 64)
    assert openvino_int8._shape(1, 256) == (1, 256) and openvino_int8._shape(5, 1) == (8, 32)
    texts = ["a short one", prose(3, 30), prose(4, 70)]
    batch = [openvino_int8.tokenizer.model_ids([t])[0] for t in texts]
    padded = openvino_int8._run(openvino_int8.load(), batch)
    assert padded.shape == (3, 384)
    for row, tokens in enumerate(batch):
        alone = openvino_int8._run(openvino_int8.load(), [tokens])[0]
        cosine = float(alone @ padded[row] / np.linalg.norm(alone) / np.linalg.norm(padded[row]))
        assert cosine > 0.999, (row, cosine)


def test_models_export_keeps_what_is_current(
    openvino_int8, onnx_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = onnx_folder(onnx_settings(onnx_home))  # exported and quantised by the fixtures
    made = {p.name: p.stat().st_mtime_ns for p in folder.iterdir()}
    assert {"model.onnx", "model-int8.onnx", FILE} <= set(made)
    monkeypatch.setenv("CONVEYOR_MODELS_DIR", str(onnx_home / "models"))
    result = CliRunner().invoke(main, ["models", "export", "--home", str(tmp_path / "home")])
    assert result.exit_code == 0, result.output
    assert "is exported in" in result.output, result.output
    assert "is quantised for OpenVINO in" in result.output, result.output
    assert {p.name: p.stat().st_mtime_ns for p in folder.iterdir()} == made  # nothing redone
