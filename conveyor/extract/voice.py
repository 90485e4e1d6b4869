"""resemblyzer's voice encoder, run with numpy alone.

The PyPI package ``resemblyzer`` ships a speaker encoder trained with the
generalised end-to-end loss (a 3-layer LSTM of 256 units over 40 mel bands,
10 ms frames, then a linear layer, ReLU and L2 normalisation: a 256-float
voice embedding of 1.6 s of speech) as ``resemblyzer/pretrained.pt``. This
module reads those weights straight from the file (PyTorch's legacy pickle
format, parsed here), runs the same network with ONNX Runtime (a graph built
from the weights in memory) and the same mel spectrogram (librosa's,
re-done in numpy), without importing torch, librosa or numba: the
extraction child stays within its address-space limit
(``CONVEYOR_EXTRACT_MEMORY_MB``), and nothing is compiled at first use.
``tests/integration/test_speakers.py`` checks the embeddings against
resemblyzer's own.
"""

from __future__ import annotations

import importlib.util
import pickle
import struct
from pathlib import Path
from typing import Any

import numpy as np

SAMPLE_RATE = 16_000
N_FFT = 400  # 25 ms
HOP = 160  # 10 ms
MELS = 40
_DTYPES = {"FloatStorage": np.float32, "DoubleStorage": np.float64, "LongStorage": np.int64}


def weights_path() -> Path | None:
    """Where the installed resemblyzer keeps its weights (the package is not imported)."""
    try:
        spec = importlib.util.find_spec("resemblyzer")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / "pretrained.pt"
    return path if path.is_file() else None


class _Storage:
    def __init__(self, key: str, dtype: Any) -> None:
        self.key, self.dtype = key, dtype
        self.data: np.ndarray | None = None


class _Tensor:
    def __init__(self, storage: _Storage, offset: int, size: tuple[int, ...], stride: Any) -> None:
        self.storage, self.offset, self.size, self.stride = storage, offset, size, stride

    def array(self) -> np.ndarray:
        assert self.storage.data is not None
        count = int(np.prod(self.size)) if self.size else 1
        flat = self.storage.data[self.offset : self.offset + count]
        return np.ascontiguousarray(flat.reshape(self.size))


def _rebuild(storage: _Storage, offset: int, size: Any, stride: Any, *_: Any) -> _Tensor:
    return _Tensor(storage, offset, tuple(size), stride)


class _StateDict(dict[str, Any]):
    """A state dict: PyTorch pickles an attribute (``_metadata``) onto it."""


class _Unpickler(pickle.Unpickler):
    def __init__(self, file: Any, storages: dict[str, _Storage]) -> None:
        super().__init__(file)
        self.storages = storages

    def find_class(self, module: str, name: str) -> Any:
        if module == "torch._utils" and name.startswith("_rebuild_tensor"):
            return _rebuild
        if module == "torch" and name in _DTYPES:
            return name
        if module == "collections" and name == "OrderedDict":
            return _StateDict
        raise pickle.UnpicklingError(f"unexpected {module}.{name} in the weights file")

    def persistent_load(self, pid: Any) -> Any:
        _, kind, key, _location, _size, _view = pid
        if key not in self.storages:
            self.storages[key] = _Storage(key, _DTYPES[kind])
        return self.storages[key]


def load_weights(path: Path) -> dict[str, np.ndarray]:
    """The ``model_state`` of a PyTorch checkpoint in the legacy (pre-1.6) format."""
    storages: dict[str, _Storage] = {}
    with path.open("rb") as f:
        for _ in range(3):  # magic number, protocol version, system info
            pickle.load(f)
        checkpoint = _Unpickler(f, storages).load()
        for key in pickle.load(f):
            (count,) = struct.unpack("<q", f.read(8))
            storage = storages[key]
            size = count * np.dtype(storage.dtype).itemsize
            storage.data = np.frombuffer(f.read(size), dtype=storage.dtype)
    return {name: t.array() for name, t in checkpoint["model_state"].items()}


class VoiceEncoder:
    """Embeddings of mel spectrograms: ``embed((batch, frames, 40)) → (batch, 256)``.

    The network is built as an ONNX graph (three ``LSTM`` nodes, ``MatMul``,
    ``Add``, ``Relu``) from the weights and run by ONNX Runtime on ``threads``
    CPU threads (0: all)."""

    def __init__(self, weights: dict[str, np.ndarray], threads: int = 0) -> None:
        import onnxruntime
        from onnx import TensorProto, helper, numpy_helper

        order = np.r_[0:256, 768:1024, 256:768]  # PyTorch's gates i f g o; ONNX's i o f c
        nodes = [helper.make_node("Transpose", ["mels"], ["x0"], perm=[1, 0, 2])]
        init = [numpy_helper.from_array(np.array([1], dtype=np.int64), "axis1")]
        for n in range(3):
            w = weights[f"lstm.weight_ih_l{n}"][order][None]
            r = weights[f"lstm.weight_hh_l{n}"][order][None]
            b = np.concatenate(
                [weights[f"lstm.bias_ih_l{n}"][order], weights[f"lstm.bias_hh_l{n}"][order]]
            )[None]
            init += [
                numpy_helper.from_array(w.astype(np.float32), f"w{n}"),
                numpy_helper.from_array(r.astype(np.float32), f"r{n}"),
                numpy_helper.from_array(b.astype(np.float32), f"b{n}"),
            ]
            nodes.append(
                helper.make_node(
                    "LSTM",
                    [f"x{n}", f"w{n}", f"r{n}", f"b{n}"],
                    [f"y{n}", f"h{n}"],
                    hidden_size=256,
                )
            )
            nodes.append(helper.make_node("Squeeze", [f"y{n}", "axis1"], [f"x{n + 1}"]))
        init += [
            numpy_helper.from_array(np.array([0], dtype=np.int64), "axis0"),
            numpy_helper.from_array(weights["linear.weight"].T.astype(np.float32), "lw"),
            numpy_helper.from_array(weights["linear.bias"].astype(np.float32), "lb"),
        ]
        nodes += [
            helper.make_node("Squeeze", ["h2", "axis0"], ["last"]),
            helper.make_node("MatMul", ["last", "lw"], ["projected"]),
            helper.make_node("Add", ["projected", "lb"], ["biased"]),
            helper.make_node("Relu", ["biased"], ["embedding"]),
        ]
        floats = TensorProto.FLOAT
        graph = helper.make_graph(
            nodes,
            "voice_encoder",
            [helper.make_tensor_value_info("mels", floats, ["batch", "frames", 40])],
            [helper.make_tensor_value_info("embedding", floats, ["batch", 256])],
            init,
        )
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        options.enable_cpu_mem_arena = False
        # no busy-waiting between runs: Whisper's threads need the cores next
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session = onnxruntime.InferenceSession(
            model.SerializeToString(), options, providers=["CPUExecutionProvider"]
        )

    def embed(self, mels: np.ndarray) -> np.ndarray:
        [raw] = self.session.run(None, {"mels": np.ascontiguousarray(mels, dtype=np.float32)})
        return np.asarray(raw / (np.linalg.norm(raw, axis=1, keepdims=True) + 1e-12))


_FILTERS: list[np.ndarray] = []


def _mel_filters() -> np.ndarray:
    """librosa.filters.mel(sr=16000, n_fft=400, n_mels=40): Slaney's scale and norm."""
    if not _FILTERS:

        def to_mel(hz: np.ndarray) -> np.ndarray:
            log = hz >= 1000.0
            mel = hz * 3.0 / 200.0
            mel[log] = 15.0 + np.log(hz[log] / 1000.0) / (np.log(6.4) / 27.0)
            return mel

        def to_hz(mel: np.ndarray) -> np.ndarray:
            log = mel >= 15.0
            hz = mel * 200.0 / 3.0
            hz[log] = 1000.0 * np.exp((np.log(6.4) / 27.0) * (mel[log] - 15.0))
            return hz

        edges = np.array([0.0, SAMPLE_RATE / 2])
        low, high = to_mel(edges)
        mel_f = to_hz(np.linspace(low, high, MELS + 2))
        fft_f = np.linspace(0, SAMPLE_RATE / 2, 1 + N_FFT // 2)
        widths = np.diff(mel_f)
        ramps = mel_f[:, None] - fft_f[None, :]
        rising = -ramps[:-2] / widths[:-1, None]
        falling = ramps[2:] / widths[1:, None]
        filters = np.maximum(0.0, np.minimum(rising, falling))
        filters *= (2.0 / (mel_f[2:] - mel_f[:-2]))[:, None]
        _FILTERS.append(filters.astype(np.float32))
    return _FILTERS[0]


def mel_frames(samples: np.ndarray, block: int = 4096) -> np.ndarray:
    """(frames, 40) mel power spectrogram as resemblyzer computes it (librosa's
    ``melspectrogram``: centred Hann frames of 25 ms every 10 ms), in blocks."""
    padded = np.pad(samples.astype(np.float32), N_FFT // 2)
    count = 1 + (padded.shape[0] - N_FFT) // HOP
    window = (0.5 - 0.5 * np.cos(2 * np.pi * np.arange(N_FFT) / N_FFT)).astype(np.float32)
    frames = np.lib.stride_tricks.sliding_window_view(padded, N_FFT)[::HOP][:count]
    filters = _mel_filters()
    out = np.empty((count, MELS), dtype=np.float32)
    for i in range(0, count, block):
        spectrum = np.abs(np.fft.rfft(frames[i : i + block] * window, axis=1)) ** 2
        out[i : i + block] = spectrum.astype(np.float32) @ filters.T
    return out
