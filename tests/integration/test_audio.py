"""Audio with real Whisper (tiny.en, int8) on speech made by espeak-ng."""

from __future__ import annotations

import io
import json
import re
import shutil
import subprocess
import sys
import wave
from pathlib import Path

import numpy as np
import pytest

from conveyor.app import Conveyor
from conveyor.extract import extract
from conveyor.settings import Settings

pytestmark = pytest.mark.skipif(
    shutil.which("espeak-ng") is None, reason="espeak-ng is not installed (make test installs it)"
)

SENTENCES = [
    "The quarterly report shows that sales grew in every region.",
    "Please remember to water the plants in the office on Friday.",
    "The new bridge across the river will open to traffic next summer.",
    "Our team meeting has moved from the small room to the library.",
]
RATE = 16_000
GAP = 1.0


def speak(text: str) -> np.ndarray:
    out = subprocess.run(
        ["espeak-ng", "-s", "150", "--stdout", text], check=True, capture_output=True
    ).stdout
    with wave.open(io.BytesIO(out)) as w:
        raw = np.frombuffer(w.readframes(w.getnframes()), dtype=np.int16).astype(np.float32)
        rate = w.getframerate()
    idx = np.arange(0, len(raw) - 1, rate / RATE)  # resample to 16 kHz (linear)
    return np.interp(idx, np.arange(len(raw)), raw).astype(np.int16)


def wav_bytes(samples: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(RATE)
        w.writeframes(samples.astype(np.int16).tobytes())
    return buffer.getvalue()


def encode(samples: np.ndarray, fmt: str, codec: str) -> bytes:
    import av

    buffer = io.BytesIO()
    with av.open(buffer, "w", format=fmt) as container:
        rate = {"libopus": 48_000, "libmp3lame": 44_100, "aac": 44_100}.get(codec, RATE)
        stream = container.add_stream(codec, rate=rate)
        stream.layout = "mono"
        stream.bit_rate = 96_000
        frame = av.AudioFrame.from_ndarray(samples.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = RATE
        resampler = av.AudioResampler(format=stream.format.name, layout="mono", rate=rate)
        for piece in resampler.resample(frame):
            for packet in stream.encode(piece):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def recording() -> tuple[np.ndarray, list[tuple[float, float]]]:
    """The sentences spoken one after another with a pause between, and their times."""
    parts, times, position = [], [], 0.0
    silence = np.zeros(int(GAP * RATE), dtype=np.int16)
    for sentence in SENTENCES:
        spoken = speak(sentence)
        times.append((position, position + len(spoken) / RATE))
        parts += [spoken, silence]
        position += (len(spoken) + len(silence)) / RATE
    return np.concatenate(parts), times


def words(text: str) -> list[str]:
    return re.sub(r"[^a-z0-9' ]", " ", text.lower()).split()


def wer(reference: str, hypothesis: str) -> float:
    ref, hyp = words(reference), words(hypothesis)
    d = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        prev, d[0] = d[0], i
        for j, h in enumerate(hyp, 1):
            prev, d[j] = d[j], min(d[j] + 1, d[j - 1] + 1, prev + (r != h))
    return d[len(hyp)] / len(ref)


def test_transcription_accuracy_and_artifacts(recording) -> None:
    samples, _ = recording
    result = extract(wav_bytes(samples))
    assert result.kind == "audio" and result.mime == "audio/wav"
    transcript = " ".join(s.text for s in result.sections)
    assert wer(" ".join(SENTENCES), transcript) <= 0.15, transcript
    assert result.metadata["language"] == "en"
    assert abs(result.metadata["duration"] - len(samples) / RATE) < 0.1
    data = json.loads(result.artifacts["transcript.json"])
    assert len(data["segments"]) == len(result.sections)
    for seg in data["segments"]:
        assert 0 <= seg["start"] < seg["end"] <= result.metadata["duration"] + 0.5
        assert 0 < seg["confidence"] <= 1
    vtt = result.artifacts["transcript.vtt"].decode()
    assert vtt.startswith("WEBVTT") and " --> " in vtt
    assert result.artifacts["transcript.txt"].decode().strip()


@pytest.mark.parametrize(
    ("fmt", "codec", "mime"),
    [
        ("flac", "flac", "audio/flac"),
        ("ogg", "libopus", "audio/ogg"),
        ("mp3", "libmp3lame", "audio/mpeg"),
        ("ipod", "aac", "audio/mp4"),
    ],
)
def test_compressed_formats(recording, fmt: str, codec: str, mime: str) -> None:
    samples, times = recording
    first = samples[: int((times[1][1] + 0.5) * RATE)]  # two sentences keep it quick
    result = extract(encode(first, fmt, codec))
    assert result.mime == mime
    transcript = " ".join(s.text for s in result.sections)
    assert wer(" ".join(SENTENCES[:2]), transcript) <= 0.2, transcript


def test_silence_noise_truncated_and_empty_fail_with_reasons(recording) -> None:
    from conveyor.exceptions import CorruptFile, EmptyDocument

    with pytest.raises(EmptyDocument, match=r"no speech detected in 5\.0 s"):
        extract(wav_bytes(np.zeros(5 * RATE, dtype=np.int16)))
    noise = np.random.default_rng(0).normal(0, 3000, 5 * RATE).clip(-32000, 32000)
    with pytest.raises(EmptyDocument, match="no speech detected"):
        extract(wav_bytes(noise))
    with pytest.raises(EmptyDocument, match="zero length"):
        extract(wav_bytes(np.zeros(0, dtype=np.int16)))
    with pytest.raises(CorruptFile, match="could not be decoded"):
        extract(b"RIFF\x24\x00\x00\x00WAVEfmt " + bytes(range(200)))
    # cut in the middle: what was decoded is still transcribed
    samples, times = recording
    mp3 = encode(samples[: int((times[1][1] + 0.5) * RATE)], "mp3", "libmp3lame")
    partial = extract(mp3[: len(mp3) * 3 // 5])
    assert "quarterly report" in " ".join(s.text for s in partial.sections).lower()


def test_ingest_then_search_gives_the_time_range(
    real_embedder, home: Path, tmp_path: Path, recording
) -> None:
    samples, times = recording
    (tmp_path / "rec").mkdir()
    (tmp_path / "rec" / "standup.wav").write_bytes(wav_bytes(samples))
    settings = Settings(home=home, chunk_size=20, chunk_overlap=0)
    with Conveyor(settings, embedder=real_embedder) as cv:
        summary = cv.ingest([tmp_path / "rec"])
        assert summary.done == 1, summary.failures
        hit = cv.search("when does the new bridge open to traffic?", k=1)[0]
        assert hit.source.endswith("standup.wav")
        start, end = times[2]
        assert hit.metadata["start_s"] <= start + 0.5 and hit.metadata["end_s"] >= end - 0.5
        assert hit.metadata["end_s"] - hit.metadata["start_s"] < 12
        doc = cv.documents()[0]
        assert doc["language"] == "en" and doc["duration"] > 10
        assert doc["summary"] and 1 <= len(doc["topics"]) <= 5
        assert doc["metadata"]["summary_method"] == "extractive"
        key = doc["metadata"]["artifacts"]["transcript.vtt"]
        assert cv.components.blobs.get(key).startswith(b"WEBVTT")
        # the job's measurements: the minutes of audio, the tokens, Whisper's memory
        [measured] = cv.components.catalog.measurements()
        assert measured["kind"] == "audio" and measured["pages"] is None
        assert measured["audio_seconds"] == pytest.approx(len(samples) / RATE, abs=0.1)
        assert measured["tokens"] > 0 and measured["stages"]["extract"] > 0
        assert measured["child_peak_mb"] > 50  # the child loaded Whisper


def test_whisper_is_imported_only_when_audio_arrives() -> None:
    code = (
        "import sys, conveyor.extract, conveyor.worker, conveyor.app; "
        "print('faster_whisper' in sys.modules, 'av' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


def test_model_loaded_once_per_process() -> None:
    from conveyor.extract.audio import load_model

    assert load_model("tiny.en") is load_model("tiny.en")


def test_long_audio_is_decoded_in_windows_with_progress(recording) -> None:
    """Bounded memory: the recording is cut into windows; times stay absolute."""
    samples, times = recording
    seen: list[str] = []
    result = extract(wav_bytes(samples), options={"window_seconds": 8.0}, progress=seen.append)
    assert len(seen) >= 3 and seen[-1].startswith("transcribe 00:00:")
    starts = [s.start_s for s in result.sections]
    assert starts == sorted(starts)
    bridge = next(s for s in result.sections if "bridge" in s.text.lower())
    assert bridge.start_s < times[2][1] and bridge.end_s > times[2][0]  # absolute times
    assert wer(" ".join(SENTENCES), " ".join(s.text for s in result.sections)) <= 0.2
