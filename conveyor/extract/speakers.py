"""Who spoke when: speaker diarization of a recording, offline.

The transcriber hands each decoded window here (:meth:`Diarizer.add`). Its
speech (Silero VAD, as Whisper's, with finer pauses) is cut into partial
utterances of 1.6 s every ``hop`` seconds (1.6: they tile it; the last one
of a stretch ends with it; a stretch under 1.6 s is one), each embedded by resemblyzer's
voice encoder (a 3-layer LSTM whose weights ship inside the PyPI wheel: no
download). Only the 256-float embeddings are kept, about 2 KiB per second of
speech, so memory stays bounded by the window. At the end
(:meth:`Diarizer.turns`) the embeddings are clustered (average-linkage
agglomerative on cosine distance, cut at ``threshold``, or into exactly
``speakers`` clusters), every partial is assigned to its nearest cluster
centre, the labels are smoothed, and speech is split into turns
``SPEAKER_1…N`` numbered by who spoke first.

:func:`label_segments` gives each transcript segment its speaker, splitting a
segment at the words where the speaker changes; :func:`talk_time` sums the
turns; :func:`error_rate` is the diarization error rate against known turns.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from conveyor.exceptions import MissingDependency

from .voice import VoiceEncoder, load_weights, mel_frames, weights_path

SAMPLE_RATE = 16_000
FRAME = 160  # samples per mel frame (10 ms)
PARTIAL = 160  # frames per partial utterance (1.6 s)
SHORTEST = 40  # frames: speech shorter than 0.4 s is not embedded (it joins a neighbour)
MOST_CLUSTERED = 800  # partials clustered at most; the rest join the nearest centre
_ENCODER: list[VoiceEncoder] = []
_MISSING: list[str] = []


@dataclass(frozen=True)
class Turn:
    start: float
    end: float
    speaker: str


def load_encoder() -> VoiceEncoder:
    """resemblyzer's voice encoder (its weights, run by :mod:`.voice`), loaded once per
    process; a missing package is reported once with how to install it, not retried."""
    if _MISSING:
        raise MissingDependency(_MISSING[0])
    if not _ENCODER:
        path = weights_path()
        if path is None:
            _MISSING.append(
                "speaker diarization needs resemblyzer, which is not installed: pip install "
                "'conveyor[audio]' (or set CONVEYOR_DIARIZE=false)"
            )
            raise MissingDependency(_MISSING[0])
        _ENCODER.append(VoiceEncoder(load_weights(path)))
    return _ENCODER[0]


def speech_regions(samples: np.ndarray) -> list[tuple[int, int]]:
    """(start, end) sample offsets of speech, pauses of 0.3 s and longer cut out."""
    from faster_whisper.vad import VadOptions, get_speech_timestamps

    options = VadOptions(min_silence_duration_ms=300, speech_pad_ms=60)
    return [(int(r["start"]), int(r["end"])) for r in get_speech_timestamps(samples, options)]


class Diarizer:
    """Collects speaker embeddings window by window, then finds the turns."""

    def __init__(
        self, speakers: int | None = None, *, hop: float = 1.6, threshold: float = 0.3
    ) -> None:
        if speakers is not None and speakers < 1:
            raise ValueError("speakers must be at least 1")
        self.speakers = speakers
        self.hop = max(1, round(hop * 100))
        self.threshold = threshold
        self.spans: list[tuple[int, int, int]] = []  # region, first frame, end frame
        self.regions: list[tuple[int, int]] = []  # in frames from the recording's start
        self.embeddings: list[np.ndarray] = []

    def add(self, start: float, samples: np.ndarray) -> None:
        """Embed the speech of one window starting ``start`` seconds in."""
        regions = speech_regions(samples)
        if not regions:
            return
        encoder = load_encoder()
        speech = np.concatenate([samples[a:b] for a, b in regions]).astype(np.float64)
        level = float(np.sqrt(np.mean(speech**2))) + 1e-9
        gain = min(max(10 ** (-30 / 20) / level, 1.0), 100.0)  # up to -30 dBFS, as resemblyzer
        mel = mel_frames(samples * np.float32(gain))
        offset = round(start * 100)
        batch: list[np.ndarray] = []
        short: list[np.ndarray] = []
        spans: list[tuple[int, int, int]] = []
        shorts: list[tuple[int, int, int]] = []
        for first, last in regions:
            a, b = first // FRAME, min(mel.shape[0], -(-last // FRAME))
            if b - a < SHORTEST:
                continue
            region = len(self.regions)
            self.regions.append((offset + a, offset + b))
            if b - a <= PARTIAL:
                short.append(mel[a:b])
                shorts.append((region, offset + a, offset + b))
                continue
            starts = [*range(a, b - PARTIAL, self.hop), b - PARTIAL]
            for s in starts:
                batch.append(mel[s : s + PARTIAL])
                spans.append((region, offset + s, offset + s + PARTIAL))
        for i in range(0, len(batch), 256):
            self.embeddings.append(encoder.embed(np.stack(batch[i : i + 256])))
        for piece in short:
            self.embeddings.append(encoder.embed(piece[None]))
        self.spans += spans + shorts

    def turns(self) -> list[Turn]:
        """Speech split into turns, each labelled ``SPEAKER_n`` (1 spoke first)."""
        if not self.embeddings:
            return []
        order = np.argsort([s[1] for s in self.spans], kind="stable")
        spans = [self.spans[i] for i in order]
        vectors = np.concatenate(self.embeddings)[order]
        labels = _smooth(spans, cluster(vectors, self.speakers, self.threshold))
        return _turns(spans, labels, self.regions)


def cluster(vectors: np.ndarray, speakers: int | None, threshold: float) -> np.ndarray:
    """A cluster number per vector: ``speakers`` clusters, or as many as average linkage
    finds under the cosine distance ``threshold``; clusters of under 3% of the speech
    join their nearest neighbour."""
    n = vectors.shape[0]
    if n == 1 or speakers == 1:
        return np.zeros(n, dtype=int)
    sample = vectors[:: -(-n // MOST_CLUSTERED)]
    found = average_linkage(sample, speakers, threshold)
    centres = np.stack([sample[found == c].mean(axis=0) for c in np.unique(found)])
    for _ in range(3):  # assign every vector to its nearest centre; drop the tiny clusters
        nearest = np.argmax(vectors @ centres.T, axis=1)
        counts = np.bincount(nearest, minlength=len(centres))
        keep = counts >= max(2, 0.03 * n) if not speakers else counts > 0
        if not keep.any():
            keep = counts == counts.max()
        centres = np.stack(
            [vectors[nearest == c].mean(axis=0) for c in range(len(centres)) if keep[c]]
        )
        centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    return np.asarray(np.argmax(vectors @ centres.T, axis=1))


def average_linkage(vectors: np.ndarray, clusters: int | None, threshold: float) -> np.ndarray:
    """Agglomerative clustering, average linkage on cosine distance (UPGMA): merge the
    closest two clusters until ``clusters`` remain, or (None) until the closest are
    ``threshold`` apart. A cluster number per vector. (scipy's ``linkage`` and
    ``fcluster`` give the same; scipy is not imported in the extraction child, whose
    address space is limited.)"""
    n = vectors.shape[0]
    distance = 1.0 - vectors.astype(np.float64) @ vectors.T.astype(np.float64)
    np.fill_diagonal(distance, np.inf)
    sizes = np.ones(n)
    labels = np.arange(n)
    remaining = n
    while remaining > max(1, clusters or 1):
        i, j = np.unravel_index(int(np.argmin(distance)), distance.shape)
        if clusters is None and distance[i, j] > threshold:
            break
        merged = (sizes[i] * distance[i] + sizes[j] * distance[j]) / (sizes[i] + sizes[j])
        distance[i], distance[:, i] = merged, merged
        distance[j], distance[:, j] = np.inf, np.inf
        distance[i, i] = np.inf
        sizes[i] += sizes[j]
        labels[labels == j] = i
        remaining -= 1
    return np.unique(labels, return_inverse=True)[1]


def _smooth(spans: Sequence[tuple[int, int, int]], labels: np.ndarray) -> np.ndarray:
    """Median of three within a region: one partial that disagrees with both
    neighbours takes their label."""
    out = labels.copy()
    for i in range(1, len(labels) - 1):
        if spans[i - 1][0] == spans[i][0] == spans[i + 1][0]:
            if labels[i - 1] == labels[i + 1] != labels[i]:
                out[i] = labels[i - 1]
    return out


def _turns(
    spans: Sequence[tuple[int, int, int]], labels: np.ndarray, regions: Sequence[tuple[int, int]]
) -> list[Turn]:
    """Each region's frames go to the partial whose centre is nearest; neighbouring
    frames of one speaker make a turn."""
    pieces: list[tuple[int, int, int]] = []  # start frame, end frame, label
    by_region: dict[int, list[tuple[float, int]]] = {}
    for (region, a, b), label in zip(spans, labels, strict=True):
        by_region.setdefault(region, []).append(((a + b) / 2, int(label)))
    for region, (a, b) in enumerate(regions):
        centres = by_region.get(region)
        if not centres:
            continue
        position = a
        for (centre, label), following in zip(centres, [*centres[1:], None], strict=True):
            end = b if following is None else round((centre + following[0]) / 2)
            end = min(max(end, position), b)
            if end > position:
                pieces.append((position, end, label))
            position = end
    pieces.sort()
    names: dict[int, str] = {}
    turns: list[Turn] = []
    for a, b, label in pieces:
        name = names.setdefault(label, f"SPEAKER_{len(names) + 1}")
        if turns and turns[-1].speaker == name and a - round(turns[-1].end * 100) <= 100:
            turns[-1] = Turn(turns[-1].start, b / 100, name)
        else:
            turns.append(Turn(a / 100, b / 100, name))
    return turns


def label_segments(
    segments: Sequence[dict[str, Any]], turns: Sequence[Turn], shortest: float = 0.6
) -> list[dict[str, Any]]:
    """Each transcript segment with its ``speaker``: the turn it overlaps; a segment
    in which the speaker changes is split where they do (at the word nearest that
    time, its text shared out in proportion to time, as words carry no times here).
    A speaker's share under ``shortest`` seconds does not split a segment."""
    out: list[dict[str, Any]] = []
    for seg in segments:
        pieces = _pieces(seg["start"], seg["end"], turns, shortest)
        if not pieces:
            out.append({**seg, **({"speaker": _nearest(seg, turns)} if turns else {})})
            continue
        words = seg["text"].split()
        cuts = [0]
        span = max(seg["end"] - seg["start"], 1e-6)
        for begin, _, _ in pieces[1:]:
            at = round((begin - seg["start"]) / span * len(words))
            cuts.append(min(max(at, cuts[-1]), len(words)))
        cuts.append(len(words))
        for n, (begin, _, speaker) in enumerate(pieces):
            text = " ".join(words[cuts[n] : cuts[n + 1]])
            start = seg["start"] if n == 0 else round(begin, 2)
            stop = seg["end"] if n == len(pieces) - 1 else round(pieces[n + 1][0], 2)
            if text:
                out.append({**seg, "start": start, "end": stop, "text": text, "speaker": speaker})
            elif out and n > 0:  # no words left for this speaker: the time joins the last
                out[-1]["end"] = stop
    return out


def _pieces(
    start: float, end: float, turns: Sequence[Turn], shortest: float
) -> list[tuple[float, float, str]]:
    """Who speaks in [start, end): (start, end, speaker), neighbours of one speaker merged,
    pieces under ``shortest`` seconds given to the speaker before (or after) them."""
    found = [
        (max(start, t.start), min(end, t.end), t.speaker)
        for t in turns
        if t.end > start and t.start < end
    ]
    merged: list[tuple[float, float, str]] = []
    for piece in found:
        if piece[1] - piece[0] < shortest and len(found) > 1:
            continue
        if merged and merged[-1][2] == piece[2]:
            merged[-1] = (merged[-1][0], piece[1], piece[2])
        else:
            merged.append(piece)
    if not merged and found:
        merged = [max(found, key=lambda p: p[1] - p[0])]
    return merged


def _nearest(seg: dict[str, Any], turns: Sequence[Turn]) -> str:
    middle = (seg["start"] + seg["end"]) / 2
    return min(turns, key=lambda t: abs((t.start + t.end) / 2 - middle)).speaker


def talk_time(turns: Sequence[Turn]) -> list[dict[str, Any]]:
    """Each speaker with their seconds of speech and number of turns, in speaker order."""
    seconds: dict[str, float] = {}
    count: dict[str, int] = {}
    for turn in turns:
        seconds[turn.speaker] = seconds.get(turn.speaker, 0.0) + turn.end - turn.start
        count[turn.speaker] = count.get(turn.speaker, 0) + 1
    ordered = sorted(seconds, key=lambda name: int(name.rsplit("_", 1)[1]))
    return [
        {"speaker": name, "seconds": round(seconds[name], 2), "turns": count[name]}
        for name in ordered
    ]


def error_rate(
    reference: Sequence[tuple[float, float, str]],
    hypothesis: Sequence[tuple[float, float, str]],
    collar: float = 0.25,
) -> float:
    """Diarization error rate: (missed speech + false alarm + speaker confusion) over
    the reference's speech, in 10 ms frames, with speakers matched one to one for the
    most overlap and ``collar`` seconds either side of each reference boundary not
    scored (the usual NIST convention)."""
    from scipy.optimize import linear_sum_assignment

    end = max([t[1] for t in reference] + [t[1] for t in hypothesis] + [0.0])
    frames = round(end * 100) + 1
    scored = np.ones(frames, dtype=bool)
    ref = np.full(frames, -1)
    hyp = np.full(frames, -1)
    ref_names = sorted({t[2] for t in reference})
    hyp_names = sorted({t[2] for t in hypothesis})
    for a, b, name in reference:
        ref[round(a * 100) : round(b * 100)] = ref_names.index(name)
        for edge in (a, b):
            scored[max(0, round((edge - collar) * 100)) : round((edge + collar) * 100)] = False
    for a, b, name in hypothesis:
        hyp[round(a * 100) : round(b * 100)] = hyp_names.index(name)
    ref, hyp = ref[scored], hyp[scored]
    total = int((ref >= 0).sum())
    if total == 0:
        return 0.0 if (hyp < 0).all() else 1.0
    overlap = np.zeros((len(ref_names), max(1, len(hyp_names))), dtype=int)
    both = (ref >= 0) & (hyp >= 0)
    np.add.at(overlap, (ref[both], hyp[both]), 1)
    rows, cols = linear_sum_assignment(-overlap)
    correct = int(overlap[rows, cols].sum())
    missed = int(((ref >= 0) & (hyp < 0)).sum())
    false_alarm = int(((ref < 0) & (hyp >= 0)).sum())
    confused = int(both.sum()) - correct
    return (missed + false_alarm + confused) / total
