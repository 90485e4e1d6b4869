"""The quality gate of the default embedding backend: its vectors stay those of fp32.

A probe set of real text (Debian package descriptions and their one-line synopses,
from ``bench/data``, plus generated prose) is embedded by the default backend (OpenVINO
int8), by ONNX Runtime's int8 (the other backend that passes) and by ONNX fp32; the mean
cosine must be at least 0.99 and the nearest description of each synopsis the same.
``bench/quality.py`` is the other half: nDCG@10 on two judged sets. Also here: a
collection is bound to its vectors' precision, so int8 and fp32 never mix.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from support import onnx_settings

from conveyor.app import Conveyor
from conveyor.components import Components
from conveyor.exceptions import ConveyorError
from conveyor.settings import Settings
from conveyor.testing import prose

DEBIAN = Path(__file__).resolve().parents[2] / "bench" / "data" / "debian_packages.json.gz"


def probe_set() -> tuple[list[str], list[str]]:
    """(documents, queries): 120 descriptions and their synopses, and generated prose."""
    data = json.loads(gzip.decompress(DEBIAN.read_bytes()))
    queries = data["queries"][::6][:120]
    docs = [data["documents"][q["relevant"][0]] for q in queries]
    docs += [" ".join(prose(i, 200).split()[:200]) for i in range(8)]
    return docs, [q["text"] for q in queries]


def test_the_default_backend_keeps_fp32s_vectors(onnx_home: Path, onnx_fp32) -> None:
    settings = onnx_settings(onnx_home)
    model = Components(settings).local_embedder
    assert model.backend == "openvino-int8", "the fastest backend that keeps the gate"
    keeps_fp32s_vectors(model, onnx_fp32)


def test_onnx_int8_keeps_fp32s_vectors(onnx_int8, onnx_fp32) -> None:
    keeps_fp32s_vectors(onnx_int8, onnx_fp32)  # the default before, a setting away


def keeps_fp32s_vectors(model: Any, onnx_fp32: Any) -> None:
    docs, queries = probe_set()
    ours, fp32 = model.embed(docs + queries), onnx_fp32.embed(docs + queries)
    cosine = np.sum(ours * fp32, axis=1)
    assert cosine.mean() >= 0.99 and cosine.min() >= 0.97, (cosine.mean(), cosine.min())
    n = len(queries)  # each synopsis' nearest description, as fp32 ranks them
    ours_top = np.argmax(ours[-n:] @ ours[:n].T, axis=1)
    fp32_top = np.argmax(fp32[-n:] @ fp32[:n].T, axis=1)
    assert np.mean(ours_top == fp32_top) >= 0.95


def test_a_collection_never_mixes_int8_and_fp32(onnx_home: Path, tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "a.txt").write_text("Penguins huddle together through the Antarctic winter.")
    models = onnx_home / "models"
    int8 = Settings(home=tmp_path / "home", models_dir=models, embedding_backend="onnx-int8")
    with Conveyor(int8) as cv:
        assert cv.ingest([docs]).done == 1
        assert cv.status()["collections"][0]["model"].endswith("#int8")
    with Conveyor(int8) as cv:
        [own] = cv.search("birds in the cold", k=1)
    fp32 = int8.model_copy(update={"embedding_backend": "onnx"})
    with Conveyor(fp32) as cv:
        # search embeds the query with the collection's own (int8) model, not fp32
        [hit] = cv.search("birds in the cold", k=1)
        assert hit.id == own.id and hit.score == pytest.approx(own.score, abs=1e-6)
        assert cv.components.query_embedder.model_id != cv.status()["collections"][0]["model"]
        with pytest.raises(ConveyorError, match="holds int8 vectors"):
            cv.ingest([docs], force=True)
        assert cv.ingest([docs], collection="other").done == 1  # another collection: fine
        assert cv.search("birds in the cold", collection="other")[0].source.endswith("a.txt")
