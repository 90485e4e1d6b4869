"""OpenVINO backend: the ONNX export, quantised to int8 by NNCF, weights and activations.

``quantise(model, folder)`` reads the fp32 ``model.onnx`` that
:func:`.onnx.export` writes (exporting it first when missing), calibrates NNCF's
post-training quantisation on generic English text and writes
``openvino-int8.xml``/``.bin`` beside it with a marker recording
:data:`FORMAT`. What was measured (README, "The defaults"; 2 AVX-512 cores):

* Static int8 (the dense layers' weights and inputs, ``ModelType.TRANSFORMER``:
  the softmax, the layer norms and the residual adds stay fp32; NNCF's
  SmoothQuant moves the activations' outliers into the weights) runs the
  256-token chunks of the pipeline 1.2-1.3× as fast as ONNX Runtime's dynamic
  int8, with a mean cosine of 0.997 to fp32 against 0.994. Without SmoothQuant:
  0.994; int8 weights alone: 0.999, but slower than ONNX Runtime's int8.
* Calibration text matters: ours is the docstrings of Python's standard library
  (real English prose, on every machine that runs conveyor), cut as the pipeline
  cuts text (256-token chunks, one per call) and as queries come (short
  sentences, batched). conveyor's generated prose, with its small vocabulary,
  gave a mean cosine of 0.995 instead of 0.997. Nothing of the judged sets.
* Two calls side by side on one compiled model with a stream of one thread per
  CPU (``NUM_STREAMS``) beat one call on both cores, as with ONNX Runtime; an
  OpenVINO stream runs one call at a time, so as many streams as calls.

``OpenVinoEmbedder`` is :class:`.onnx.OnnxEmbedder` (tokenising, batching by
length, pooling) over the compiled model; its vectors are another space than
fp32's and ONNX int8's (:data:`OV_INT8`).
"""

from __future__ import annotations

import json
import logging
import os
import random
import re
import sysconfig
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from ..exceptions import ConfigurationError
from . import OV_INT8, canonical_model_name
from .onnx import FORMAT as ONNX_FORMAT
from .onnx import INPUTS, OnnxEmbedder, Session, export, is_current, model_inputs

log = logging.getLogger(__name__)

FORMAT = 2  # bump whenever quantise() makes a different model: older ones are redone
MARKER = "conveyor-openvino.json"
FILE = "openvino-int8.xml"  # its weights: openvino-int8.bin
EXTRA = "pip install openvino nncf (dependencies of conveyor: reinstall it)"
CALIBRATION_CHUNKS = 200  # 256-token chunks, one per call
CALIBRATION_BATCHES = 100  # batches of short sentences
WIDTH_STEP = 32  # input widths are padded to a multiple of this (see OpenVinoEmbedder._shape)
THIRD_PARTY = {"site-packages", "dist-packages"}  # under the standard library's folder


def _openvino() -> Any:
    try:
        import openvino
    except ImportError:
        raise ConfigurationError(
            f"the openvino-int8 backend needs OpenVINO and NNCF: {EXTRA}"
        ) from None
    return openvino


def is_quantised(folder: Path) -> bool:
    """Whether ``folder`` holds an int8 model made by this :data:`FORMAT` from the
    ONNX export of the current :data:`.onnx.FORMAT`."""
    try:
        marker = json.loads((folder / MARKER).read_text())
    except (OSError, ValueError):
        return False
    return (
        marker.get("format") == FORMAT
        and marker.get("onnx_format") == ONNX_FORMAT
        and (folder / FILE).exists()
    )


def calibration_texts(count: int = 3000) -> list[str]:
    """Docstrings of Python's standard library: English prose about software, there
    wherever Python is (generated prose, the fallback, calibrates worse: cosine 0.995)."""
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    texts = []
    for path in sorted(stdlib.rglob("*.py")):
        if not THIRD_PARTY.isdisjoint(path.relative_to(stdlib).parts):
            continue  # the same text on every machine: not what happens to be installed
        try:
            source = path.read_text(errors="ignore")
        except OSError:
            continue
        for match in re.finditer(r'"""(.*?)"""', source, re.S):
            text = " ".join(match.group(1).split())
            if len(text) > 200:
                texts.append(text)
    if len(texts) < count // 10:  # a Python without its sources
        from ..testing import prose

        log.warning("no standard library sources in %s: calibrating on generated prose", stdlib)
        texts = [prose(1000 + i, 600) for i in range(400)]
    random.Random(0).shuffle(texts)
    return texts[:count]


def calibration_inputs(
    tokenizer: Any, max_seq_length: int, *, chunks: int, batches: int
) -> Iterator[dict[str, np.ndarray]]:
    """Model inputs shaped as the embedder feeds them: single texts of ~256 tokens cut
    from :func:`calibration_texts`, and batches of its short sentences (≤ 256 padded
    tokens), as queries come."""
    rng = random.Random(0)
    texts = calibration_texts()
    words = " ".join(texts).split()
    start = 0
    for _ in range(chunks):
        length = rng.choice((180, 190, 200))
        ids = tokenizer.encode(" ".join(words[start : start + length])).ids
        start = (start + length) % max(1, len(words) - 200)
        if len(ids) > max_seq_length:
            ids = [*ids[: max_seq_length - 1], ids[-1]]
        yield _feed([ids])
    sentences = [
        sentence
        for text in texts
        for sentence in re.split(r"(?<=[.!?])\s+", text)
        if 20 < len(sentence) < 300
    ]
    rng.shuffle(sentences)
    for n in range(batches):
        encoded = sorted(
            (e.ids for e in tokenizer.encode_batch(sentences[n * 12 : (n + 1) * 12])), key=len
        )
        if encoded:
            yield _feed(encoded[: max(1, 256 // len(encoded[-1]))])


def _feed(batch: list[list[int]]) -> dict[str, np.ndarray]:
    return model_inputs(batch, (len(batch), max(len(tokens) for tokens in batch)))


def quantise(model: str, folder: Path) -> Path:
    """Quantise ``folder/model.onnx`` (exported first if missing) to ``folder/FILE``.

    Written in a temporary folder beside ``folder`` and moved in, the marker last.
    """
    openvino = _openvino()
    try:
        import nncf
    except ImportError:
        raise ConfigurationError(f"quantising for OpenVINO needs NNCF: {EXTRA}") from None
    from .local import LocalTokenizer, _max_seq_length

    if not is_current(folder, "model.onnx"):
        export(model, folder)
    source = Path(folder)
    max_seq_length = _max_seq_length(source)
    tokenizer = LocalTokenizer(source, max_seq_length)._tok
    net = openvino.Core().read_model(str(folder / "model.onnx"))
    names = {port.get_any_name() for port in net.inputs}
    feeds = [
        {k: v for k, v in feed.items() if k in names}
        for feed in calibration_inputs(
            tokenizer, max_seq_length, chunks=CALIBRATION_CHUNKS, batches=CALIBRATION_BATCHES
        )
    ]
    quantised = nncf.quantize(
        net,
        nncf.Dataset(feeds),
        preset=nncf.QuantizationPreset.MIXED,
        model_type=nncf.ModelType.TRANSFORMER,
        subset_size=len(feeds),
    )
    with tempfile.TemporaryDirectory(prefix=".openvino-", dir=folder.parent) as tmp:
        work = Path(tmp)
        openvino.save_model(quantised, str(work / FILE), compress_to_fp16=False)
        files = [FILE, FILE.replace(".xml", ".bin")]
        (work / MARKER).write_text(
            json.dumps(
                {
                    "format": FORMAT,
                    "model": canonical_model_name(model),
                    "onnx_format": ONNX_FORMAT,
                    "files": files,
                }
            )
        )
        for name in [*files, MARKER]:
            os.replace(work / name, folder / name)
    return folder


class _Compiled:
    """``run(None, feeds)`` as an ONNX Runtime session has it, over an OpenVINO compiled
    model: one infer request per calling thread (a request runs one call at a time)."""

    def __init__(self, compiled: Any) -> None:
        self.compiled = compiled
        self.names = {port.get_any_name() for port in compiled.inputs}
        self._local = threading.local()

    def run(self, _outputs: Any, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        request = getattr(self._local, "request", None)
        if request is None:
            request = self._local.request = self.compiled.create_infer_request()
        result = request.infer({k: v for k, v in feeds.items() if k in self.names})
        return [np.asarray(result[0])]


class OpenVinoEmbedder(OnnxEmbedder):
    """``embed`` with the NNCF int8 model on OpenVINO's CPU plugin; ``threads`` calls
    at once, each in its own stream of one thread (0: one per CPU)."""

    def __init__(self, model: str, folder: Path, *, threads: int = 0) -> None:
        super().__init__(model, folder, int8=False, threads=threads)
        self.model_id = self.model + OV_INT8
        self.backend = "openvino-int8"

    def _shape(self, rows: int, width: int) -> tuple[int, int]:
        """Widths rounded up to a multiple of :data:`WIDTH_STEP` tokens, rows to a power
        of two: OpenVINO compiles and keeps kernels for each input shape it meets, and
        the pipeline's calls, as they come, grew a process past 2 GB (bucketed: ~700 MB,
        and 1.5x faster; vectors within cosine 0.9998 of unpadded)."""
        width = min(-(-width // WIDTH_STEP) * WIDTH_STEP, max(self.max_seq_length, width))
        return 1 << (rows - 1).bit_length(), width

    def _open(self) -> Session:
        openvino = _openvino()
        if not is_quantised(self.folder):
            log.warning(
                "quantising %s to int8 for OpenVINO in %s: once per machine, about "
                "a minute (`conveyor models export` does it ahead of time)",
                self.model,
                self.folder,
            )
            quantise(self.model, self.folder)
        compiled = openvino.Core().compile_model(
            str(self.folder / FILE),
            "CPU",
            {
                "NUM_STREAMS": self.threads,
                "INFERENCE_NUM_THREADS": self.threads,
                "INFERENCE_PRECISION_HINT": "f32",  # not bf16 on AMX machines
            },
        )
        session = _Compiled(compiled)
        # a first call in this thread: pybind11 sets up its numpy bindings on first use,
        # and two threads doing that at once deadlock (OpenVINO 2026.4)
        self._run(session, self.tokenizer.model_ids(["warm up"]))
        return session


__all__ = ["FILE", "FORMAT", "INPUTS", "MARKER", "OpenVinoEmbedder", "is_quantised", "quantise"]
