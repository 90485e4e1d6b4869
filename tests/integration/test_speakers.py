"""Who spoke when: real Whisper and real resemblyzer on conversations spoken by espeak-ng
voices that differ, with the true turns known."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner

from conveyor.app import Conveyor
from conveyor.cli import main
from conveyor.exceptions import EmptyDocument
from conveyor.extract import extract
from conveyor.extract.speakers import error_rate, load_encoder
from conveyor.settings import Settings
from conveyor.testing import conversation, spoken, wav

pytestmark = pytest.mark.skipif(
    shutil.which("espeak-ng") is None, reason="espeak-ng is not installed (make test installs it)"
)

TWO = ["en-us+m3", "en-us+f2"]
THREE = ["en-us+m3", "en-us+f2", "en+m7"]


def transcript(result: Any) -> dict[str, Any]:
    return json.loads(result.artifacts["transcript.json"])


def turns(result: Any) -> list[tuple[float, float, str]]:
    return [(t["start"], t["end"], t["speaker"]) for t in transcript(result)["turns"]]


def true_speaker(truth: list[tuple[float, float, str]], start: float, end: float) -> str:
    """Who the truth says speaks most in [start, end)."""
    said: dict[str, float] = {}
    for a, b, voice in truth:
        said[voice] = said.get(voice, 0.0) + max(0.0, min(b, end) - max(a, start))
    return max(said, key=lambda voice: said[voice])


@pytest.mark.parametrize(("voices", "seed"), [(TWO, 1), (THREE, 2)], ids=["two", "three"])
def test_conversation_turns_speaker_count_and_labels(voices: list[str], seed: int) -> None:
    samples, truth = conversation(voices, 100, seed=seed)
    result = extract(wav(samples))
    der = error_rate(truth, turns(result))
    assert der <= 0.15, der
    speakers = result.metadata["speakers"]
    assert [s["speaker"] for s in speakers] == [f"SPEAKER_{n + 1}" for n in range(len(voices))]
    spoken_for = sum(b - a for a, b, _ in truth)
    assert abs(sum(s["seconds"] for s in speakers) - spoken_for) < 0.1 * spoken_for
    assert result.metadata["speaker_turns"] >= len(truth) * 0.8
    # each segment's speaker is the voice that said it (one name per voice)
    named: dict[str, str] = {}
    agree = total = 0.0
    for section in result.sections:
        voice = true_speaker(truth, section.start_s, section.end_s)
        name = named.setdefault(section.metadata["speaker"], voice)
        total += section.end_s - section.start_s
        agree += (section.end_s - section.start_s) * (name == voice)
    assert agree >= 0.85 * total, (agree, total)
    data = transcript(result)
    assert all(seg["speaker"].startswith("SPEAKER_") for seg in data["segments"])
    assert data["speakers"] == speakers
    vtt = result.artifacts["transcript.vtt"].decode()
    assert vtt.count("<v SPEAKER_") == len(data["segments"])


def test_a_segment_spoken_by_two_is_split_where_the_speaker_changes() -> None:
    first = spoken("The first speaker reads the shipping schedule for the warehouse", "en-us+m3")
    second = spoken("and the second speaker answers about the invoice due in Denver", "en-us+f2")
    samples = np.concatenate([first, second, np.zeros(8000, dtype=np.int16)])  # no pause
    result = extract(wav(samples), options={"speakers": 2})
    change = len(first) / 16_000
    labels = [(s.start_s, s.metadata["speaker"], s.text.lower()) for s in result.sections]
    assert len({name for _, name, _ in labels}) == 2, labels
    before = [text for start, _, text in labels if start < change - 1]
    after = [text for start, _, text in labels if start > change - 1]
    assert any("warehouse" in t or "schedule" in t for t in before), labels
    assert any("invoice" in t or "denver" in t for t in after), labels


def test_one_speaker_has_one_label() -> None:
    samples, truth = conversation(["en-us"], 60, seed=3)
    result = extract(wav(samples))
    assert [s["speaker"] for s in result.metadata["speakers"]] == ["SPEAKER_1"]
    assert {s.metadata["speaker"] for s in result.sections} == {"SPEAKER_1"}
    assert error_rate(truth, turns(result)) <= 0.15


def test_forced_count_and_turned_off() -> None:
    samples, _ = conversation(TWO, 40, seed=4)
    data = wav(samples)
    forced = extract(data, options={"speakers": 3})
    assert len(forced.metadata["speakers"]) == 3
    off = extract(data, options={"diarize": False})
    assert "speakers" not in off.metadata and "speaker" not in off.sections[0].metadata
    assert "<v " not in off.artifacts["transcript.vtt"].decode()
    assert "turns" not in transcript(off)


def test_silence_has_no_speakers() -> None:
    with pytest.raises(EmptyDocument, match="no speech detected"):
        extract(wav(np.zeros(8 * 16_000, dtype=np.int16)))


def test_chunks_and_hits_carry_their_speakers(real_embedder, home: Path, tmp_path: Path) -> None:
    samples, _ = conversation(TWO, 60, seed=5)
    (tmp_path / "rec").mkdir()
    (tmp_path / "rec" / "standup.wav").write_bytes(wav(samples))
    settings = Settings(home=home, chunk_size=40, chunk_overlap=0)
    with Conveyor(settings, embedder=real_embedder) as cv:
        summary = cv.ingest([tmp_path / "rec"])
        assert summary.done == 1, summary.failures
        doc = cv.documents()[0]
        assert [s["speaker"] for s in doc["metadata"]["speakers"]] == ["SPEAKER_1", "SPEAKER_2"]
        hits = cv.search("the report", k=20)
        assert hits and all(h.metadata["speakers"] for h in hits)
        assert {n for h in hits for n in h.metadata["speakers"]} == {"SPEAKER_1", "SPEAKER_2"}
        assert hits[0].as_dict()["speakers"] == hits[0].metadata["speakers"]
        key = doc["metadata"]["artifacts"]["transcript.vtt"]
        assert b"<v SPEAKER_1>" in cv.components.blobs.get(key)
    out = CliRunner().invoke(
        main,
        ["search", "the report", "-k", "3", "--home", str(home)],
        env={"CONVEYOR_EMBEDDING_BACKEND": "torch"},
    )
    assert out.exit_code == 0, out.output
    assert "standup.wav" in out.output and "SPEAKER_" in out.output.splitlines()[0]


def test_resemblyzer_is_imported_only_when_audio_arrives() -> None:
    code = (
        "import sys, conveyor.extract, conveyor.worker, conveyor.app; "
        "print('resemblyzer' in sys.modules, 'onnx' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


def test_the_encoder_is_resemblyzers() -> None:
    """The weights read without torch, the numpy mel spectrogram and the ONNX network
    give resemblyzer's own embeddings."""
    import warnings

    from conveyor.extract import voice

    with warnings.catch_warnings():  # webrtcvad imports pkg_resources
        warnings.simplefilter("ignore")
        import torch
        from resemblyzer import VoiceEncoder, audio

    samples, _ = conversation(TWO, 12, seed=6)
    x = samples.astype(np.float32) / 32768
    mel = voice.mel_frames(x)
    assert np.allclose(mel, audio.wav_to_mel_spectrogram(x), atol=1e-4)
    mels = np.stack([mel[i : i + 160] for i in range(0, mel.shape[0] - 160, 80)])
    ours = load_encoder().embed(mels)
    with torch.inference_mode():
        theirs = VoiceEncoder("cpu", verbose=False)(torch.from_numpy(mels)).numpy()
    assert (ours * theirs).sum(axis=1).min() > 0.9999


def test_a_missing_resemblyzer_says_how_to_install_it_once(tmp_path: Path) -> None:
    """With resemblyzer hidden, audio fails with a one-line hint, and the import is not
    tried again for the next recording."""
    code = (
        "import sys; sys.modules['resemblyzer'] = None\n"
        "from conveyor.extract import speakers\n"
        "real = speakers.weights_path; tries = []\n"
        "def counting():\n"
        "    tries.append(1)\n"
        "    return real()\n"
        "speakers.weights_path = counting\n"
        "for _ in range(2):\n"
        "    try: speakers.load_encoder()\n"
        "    except Exception as exc: print(type(exc).__name__, exc)\n"
        "print(len(tries))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    lines = out.stdout.strip().splitlines()
    assert lines[0] == lines[1] and lines[0].startswith("MissingDependency")
    assert "pip install 'conveyor[audio]'" in lines[0] and "CONVEYOR_DIARIZE=false" in lines[0]
    assert lines[2] == "1"
