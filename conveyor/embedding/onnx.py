"""ONNX Runtime backend: the same model, exported once, fp32 or int8.

``export(model, folder, int8=...)`` writes ``model.onnx`` (and
``model-int8.onnx``) next to a copy of the tokenizer and a marker file that
records :data:`FORMAT`. How the graph is made decides its speed:

* The encoder is traced with eager attention. The default (SDPA) attention
  exports a NaN-masking pass (``IsNaN`` + ``Where``) in every layer and stops
  ONNX Runtime from fusing attention; the eager graph runs ~20% faster in fp32
  and ~50% faster in int8 on 2 AVX-512 cores, with the same vectors.
* int8 is dynamic quantisation of the weight matrices, per output channel
  (per-tensor loses too much accuracy for MiniLM: mean cosine 0.93). The
  attention products of two activations stay fp32, which is why ours keeps a
  mean cosine of 0.993 to torch where optimum's export quantised the same way
  (every MatMul, embeddings too) gets 0.987 and runs slower.
* Fusing ahead of time (``onnxruntime.transformers.optimizer``) before
  quantising made int8 *slower* here (QAttention); ONNX Runtime's own load-time
  fusions are enough.

``OnnxEmbedder`` exports on first use when the files are missing or were made
by an older :data:`FORMAT`, then tokenises with the model's fast tokenizer,
runs the graph on texts sorted by length in small batches (little padding),
one call per CPU at a time, mean-pools over the attention mask and normalises —
what sentence-transformers does for this family of models.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import threading
import warnings
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..exceptions import ConfigurationError
from . import canonical_model_name, l2_normalise, model_folder, quantised_id
from .local import LocalTokenizer, _max_seq_length

if TYPE_CHECKING:
    import torch

Session = Any
"""An ``onnxruntime.InferenceSession`` (onnxruntime ships no type information)."""

log = logging.getLogger(__name__)

INPUTS = ("input_ids", "attention_mask", "token_type_ids")
FORMAT = 2  # bump whenever export() makes a different graph: older exports are redone
MARKER = "conveyor-onnx.json"
BATCH_TOKENS = 256  # padded tokens per ONNX Runtime call (one text of 256, 20 short ones)


def cpus() -> int:
    """CPUs this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - macOS, Windows
        return os.cpu_count() or 1


def export(model: str, folder: Path, *, int8: bool = True) -> Path:
    """Export ``model`` to ``folder/model.onnx`` (and ``model-int8.onnx``); returns folder.

    The files are written in a temporary folder beside ``folder`` and moved in,
    the marker last, so a process that finds the marker finds whole files.
    """
    try:
        import torch
        from transformers import AutoModel
    except ImportError:  # pragma: no cover - torch is a base dependency
        raise ConfigurationError("exporting to ONNX needs torch and transformers") from None
    source = model_folder(model)
    folder.mkdir(parents=True, exist_ok=True)
    # eager attention: SDPA's export adds a NaN-masking pass per layer (see above)
    net = AutoModel.from_pretrained(str(source), attn_implementation="eager").eval()

    class Encoder(torch.nn.Module):
        def __init__(self, inner: torch.nn.Module) -> None:
            super().__init__()
            self.inner = inner

        def forward(
            self,
            input_ids: torch.Tensor,
            attention_mask: torch.Tensor,
            token_type_ids: torch.Tensor,
        ) -> torch.Tensor:
            hidden: torch.Tensor = self.inner(
                input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
            ).last_hidden_state
            return hidden

    with tempfile.TemporaryDirectory(prefix=".export-", dir=folder.parent) as tmp:
        work = Path(tmp)
        target = work / "model.onnx"
        sample = torch.ones((2, 8), dtype=torch.long)
        with warnings.catch_warnings():  # the tracer's chatter is not the user's business
            warnings.simplefilter("ignore")
            _export(Encoder(net), sample, target)
        files = ["model.onnx"]
        if int8:
            from onnxruntime.quantization import QuantType, quantize_dynamic

            with _quiet_root(PREPROCESS_ADVICE):
                quantize_dynamic(
                    str(target),
                    str(work / "model-int8.onnx"),
                    weight_type=QuantType.QInt8,
                    per_channel=True,
                )
            files.append("model-int8.onnx")
        for name in ("tokenizer.json", "config.json", "sentence_bert_config.json"):
            if (source / name).exists():
                shutil.copyfile(source / name, work / name)
                files.append(name)
        (work / MARKER).write_text(
            json.dumps({"format": FORMAT, "model": canonical_model_name(model), "files": files})
        )
        for name in [*files, MARKER]:
            os.replace(work / name, folder / name)
    return folder


def _export(module: torch.nn.Module, sample: torch.Tensor, target: Path) -> None:
    import torch

    torch.onnx.export(
        module,
        (sample, sample, torch.zeros_like(sample)),
        str(target),
        input_names=list(INPUTS),
        output_names=["last_hidden_state"],
        dynamic_axes={name: {0: "batch", 1: "tokens"} for name in (*INPUTS, "last_hidden_state")},
        opset_version=17,
        dynamo=False,  # the TorchScript exporter: dynamo's graph is slower here
    )


PREPROCESS_ADVICE = "Please consider to run pre-processing before quantization"
"""What ONNX Runtime's quantiser tells the root logger every time: advice for image
models (shape inference before quantising), not for this one."""


class _Dropping(logging.Filter):
    def __init__(self, prefix: str) -> None:
        super().__init__()
        self.prefix = prefix

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(self.prefix)


@contextmanager
def _quiet_root(prefix: str) -> Iterator[None]:
    """The root logger drops records starting with ``prefix`` meanwhile."""
    dropping = _Dropping(prefix)
    root = logging.getLogger()
    root.addFilter(dropping)
    try:
        yield
    finally:
        root.removeFilter(dropping)


def is_current(folder: Path, filename: str) -> bool:
    """Whether ``folder/filename`` exists and was made by this :data:`FORMAT`."""
    try:
        marker = json.loads((folder / MARKER).read_text())
    except (OSError, ValueError):
        return False
    return marker.get("format") == FORMAT and (folder / filename).exists()


def model_inputs(batch: list[list[int]], shape: tuple[int, int]) -> dict[str, np.ndarray]:
    """The model's inputs for ``batch`` (token ids, truncated with the closing [SEP]
    kept), padded to ``shape`` (rows, width); rows past the batch's hold one token each,
    so that no row is all padding."""
    rows, width = shape
    ids = np.zeros((rows, width), dtype=np.int64)
    mask = np.zeros_like(ids)
    mask[len(batch) :, 0] = 1
    for row, tokens in enumerate(batch):
        ids[row, : len(tokens)] = tokens
        mask[row, : len(tokens)] = 1
    return {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}


class OnnxEmbedder:
    """``embed`` with ONNX Runtime; ``int8`` picks the quantised graph.

    ``threads``: model calls that run at once, on one CPU thread each (0: one per
    CPU); ``batch_tokens``: padded tokens per model call. Small calls side by
    side beat large ones spread over the cores: each call's activations stay in
    its core's cache and no call waits for the others between operators (on 2
    cores, int8: ~105 texts/s against 85-90 for calls of 8 texts on both cores).
    """

    def __init__(
        self,
        model: str,
        folder: Path,
        *,
        int8: bool = True,
        threads: int = 0,
        batch_tokens: int = BATCH_TOKENS,
    ) -> None:
        self.model = canonical_model_name(model)
        self.model_id = quantised_id(self.model) if int8 else self.model
        self.backend = "onnx-int8" if int8 else "onnx"  # as the setting names it
        self.folder = folder
        self.int8 = int8
        self.threads = threads or cpus()
        self.batch_tokens = batch_tokens
        self._session: Session = None
        self._pool: ThreadPoolExecutor | None = None
        self._dim: int | None = None
        self._lock = threading.Lock()
        source = model_folder(model)
        self.max_seq_length = _max_seq_length(source)
        self.tokenizer = LocalTokenizer(source, self.max_seq_length)

    def load(self) -> Session:
        with self._lock:
            if self._session is None:
                self._session = self._open()
                if self.threads > 1:
                    self._pool = ThreadPoolExecutor(self.threads, thread_name_prefix=self.backend)
            return self._session

    def _open(self) -> Session:
        """The model's session, its files made first if missing (under ``load``'s lock)."""
        try:
            import onnxruntime as ort
        except ImportError:
            raise ConfigurationError(
                "the ONNX backend needs ONNX Runtime: pip install onnxruntime onnx"
            ) from None
        name = "model-int8.onnx" if self.int8 else "model.onnx"
        if not is_current(self.folder, name):
            log.warning("exporting %s to ONNX in %s (once)", self.model, self.folder)
            export(self.model, self.folder)  # both graphs: one export serves both
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.intra_op_num_threads = 1  # parallel calls instead: see the class
        options.inter_op_num_threads = 1
        return ort.InferenceSession(
            str(self.folder / name), options, providers=["CPUExecutionProvider"]
        )

    @property
    def dim(self) -> int:
        if self._dim is None:
            self._dim = int(self.embed(["dimension"]).shape[1])
        return self._dim

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        session = self.load()
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        limit = self.max_seq_length
        ids = [
            tokens if len(tokens) <= limit else [*tokens[: limit - 1], tokens[-1]]
            for tokens in self.tokenizer.model_ids(texts)
        ]
        order = sorted(range(len(ids)), key=lambda i: len(ids[i]))  # alike lengths: no padding
        batches = []
        start = 0
        # Enough batches for every thread: a group of short texts that would fit one
        # call is cut in as many as there are threads, so no core waits for one call.
        spread = -(-sum(len(i) for i in ids) // self.threads)
        budget = max(min(self.batch_tokens, spread), 1)
        while start < len(order):
            end = start + 1  # the longest text of a batch is its last: grow while it fits
            while end < len(order) and (end + 1 - start) * len(ids[order[end]]) <= budget:
                end += 1
            batches.append(order[start:end])
            start = end

        def run(rows: list[int]) -> np.ndarray:
            return self._run(session, [ids[i] for i in rows])

        if self._pool is None or len(batches) == 1:
            pooled = [run(rows) for rows in batches]
        else:
            pooled = list(self._pool.map(run, batches))
        out = np.empty((len(ids), pooled[0].shape[1]), dtype=np.float32)
        for rows, vectors in zip(batches, pooled, strict=True):
            out[rows] = vectors
        return l2_normalise(out)

    def close(self) -> None:
        """Stop the threads that run calls side by side."""
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None

    def _shape(self, rows: int, width: int) -> tuple[int, int]:
        """The input shape a batch of ``rows`` texts of at most ``width`` tokens is padded
        to (as it is, here)."""
        return rows, width

    def _run(self, session: Session, batch: list[list[int]]) -> np.ndarray:
        """Mean-pooled (not yet normalised) vectors of one padded batch."""
        feed = model_inputs(batch, self._shape(len(batch), max(len(t) for t in batch)))
        hidden = session.run(None, feed)[0][: len(batch)]
        weights = feed["attention_mask"][: len(batch), :, None].astype(np.float32)
        pooled: np.ndarray = (hidden * weights).sum(axis=1) / np.maximum(weights.sum(axis=1), 1e-9)
        return pooled.astype(np.float32, copy=False)
