"""int8 and fp32 vectors of one model never share a collection (fakes; the real
backends are in tests/integration/test_quality_gate.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from conveyor.app import Conveyor
from conveyor.embedding import INT8, OV_INT8, base_model, precision, quantised_id
from conveyor.embedding.cache import CachedEmbedder
from conveyor.exceptions import ConveyorError
from conveyor.settings import Settings
from conveyor.testing import FakeEmbedder


def _settings(home: Path) -> Settings:
    return Settings(home=home, chunk_size=60, chunk_overlap=10, isolate_extraction=False)


def test_a_quantised_model_is_another_vector_space() -> None:
    assert quantised_id("org/model") == "org/model" + INT8 != "org/model"


def test_int8_and_fp32_fail_at_once_naming_the_backend(tmp_path: Path) -> None:
    f = tmp_path / "a.txt"
    f.write_text("Collections remember the precision of their vectors.")
    home = tmp_path / "home"
    with Conveyor(_settings(home), embedder=FakeEmbedder(model_id="fake/m" + INT8)) as cv:
        assert cv.ingest([f]).done == 1
    with Conveyor(_settings(home), embedder=FakeEmbedder(model_id="fake/m")) as cv:
        with pytest.raises(ConveyorError, match="CONVEYOR_EMBEDDING_BACKEND=onnx-int8"):
            cv.search("precision")
        with pytest.raises(ConveyorError, match="holds int8 vectors of fake/m"):
            cv.ingest([f], force=True)
        assert cv.ingest([f], collection="fp32").done == 1  # another collection is fine
    with Conveyor(_settings(home), embedder=FakeEmbedder(model_id="fake/m" + INT8)) as cv:
        with pytest.raises(ConveyorError, match=r"CONVEYOR_EMBEDDING_BACKEND=onnx \(or torch\)"):
            cv.search("precision", collection="fp32")


def test_the_cache_never_serves_int8_vectors_to_fp32(tmp_path: Path) -> None:
    f = tmp_path / "a.txt"
    f.write_text("The same text, embedded twice.")
    home = tmp_path / "home"
    for model_id, collection in (("fake/m" + INT8, "a"), ("fake/m", "b")):
        with Conveyor(_settings(home), embedder=FakeEmbedder(model_id=model_id)) as cv:
            assert cv.ingest([f], collection=collection).done == 1
            cached = cv.components.embedder
            assert isinstance(cached, CachedEmbedder)
            assert (cached.hits, cached.misses) == (0, 1)  # nothing reused across precisions


def test_openvino_and_onnx_int8_are_two_spaces(tmp_path: Path) -> None:
    assert base_model("org/m" + OV_INT8) == base_model("org/m" + INT8) == "org/m"
    assert precision("org/m" + OV_INT8) == ("OpenVINO int8", "openvino-int8")
    assert precision("org/m") == ("fp32", "onnx")
    f = tmp_path / "a.txt"
    f.write_text("Two int8 models are two vector spaces.")
    home = tmp_path / "home"
    with Conveyor(_settings(home), embedder=FakeEmbedder(model_id="fake/m" + OV_INT8)) as cv:
        assert cv.ingest([f]).done == 1
    with Conveyor(_settings(home), embedder=FakeEmbedder(model_id="fake/m" + INT8)) as cv:
        with pytest.raises(ConveyorError, match="CONVEYOR_EMBEDDING_BACKEND=openvino-int8"):
            cv.search("spaces")
        with pytest.raises(ConveyorError, match="holds OpenVINO int8 vectors of fake/m"):
            cv.ingest([f], force=True)
