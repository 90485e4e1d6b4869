"""Transcription speed: real-time factor of Whisper tiny.en (int8) on this CPU,
without and with speaker diarization.

Generates a conversation with espeak-ng (three voices taking turns of 3–15 s,
~--minutes long, the true turns known), then times conveyor's audio
extractor (PyAV decode in windows + faster-whisper with VAD) without
diarization and with it, and prints the real-time factors (seconds of audio
per second of wall time; goal >= 20x on 2 cores), the time diarization adds
as a share of transcription (goal <= 25%), the diarization error rate and
the speakers found, the time spent decoding, and the peak memory of the
process after each. Runs are alternated, ``--repeat`` of each, and the best
of each kept (a shared machine's noise is larger than the difference).

    python bench/audio.py                   # 5 minutes of conversation
    python bench/audio.py --minutes 30 --threads 2 --repeat 1
"""

from __future__ import annotations

import argparse
import resource
import time

from conveyor.extract import extract
from conveyor.extract.audio import decode_windows, load_model
from conveyor.extract.speakers import Diarizer, error_rate, load_encoder
from conveyor.testing import conversation, wav

VOICES = ["en-us+m3", "en-us+f2", "en+m7"]

RATE = 16_000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=5.0)
    parser.add_argument("--threads", type=int, default=0, help="Whisper CPU threads (0: all)")
    parser.add_argument("--model", default="tiny.en")
    parser.add_argument("--voices", type=int, default=3, choices=[1, 2, 3])
    parser.add_argument("--repeat", type=int, default=2, help="runs of each, alternated")
    args = parser.parse_args()

    samples, truth = conversation(VOICES[: args.voices], args.minutes * 60, seed=7)
    data = wav(samples)
    seconds = len(samples) / RATE
    print(
        f"audio: {seconds / 60:.1f} min of espeak-ng conversation, {args.voices} voices, "
        f"{len(truth)} turns, WAV {len(data) / 1e6:.1f} MB"
    )

    t = time.perf_counter()
    load_model(args.model, "int8", args.threads)
    load_encoder()
    print(f"model load:        {time.perf_counter() - t:6.2f} s (once per worker)")

    t = time.perf_counter()
    for _ in decode_windows(data, 600.0):
        pass
    decode_s = time.perf_counter() - t

    options = {"whisper_model": args.model, "threads": args.threads}
    plain = both = float("inf")
    plain_peak, plain_segments = 0.0, 0
    for n in range(args.repeat):  # alternated, best of each: the machine may be shared
        t = time.perf_counter()
        result = extract(data, options={**options, "diarize": False})
        plain = min(plain, time.perf_counter() - t)
        if n == 0:  # before any diarized run
            plain_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            plain_segments = len(result.sections)
        t = time.perf_counter()
        result = extract(data, options=options)
        both = min(both, time.perf_counter() - t)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"transcribe:        {plain:6.2f} s  {plain_segments} segments  (best of {args.repeat})")
    print(f"  of which decode: {decode_s:6.2f} s")
    print(f"real-time factor:  {seconds / plain:6.1f}x  (goal >= 20x)")
    print(f"peak RSS:          {plain_peak:6.0f} MiB")
    t = time.perf_counter()
    diarizer = Diarizer()
    for start, window in decode_windows(data, 300.0):
        diarizer.add(start, window)
    turns = diarizer.turns()
    alone = time.perf_counter() - t
    der = error_rate(truth, [(x.start, x.end, x.speaker) for x in turns])
    found = len(result.metadata["speakers"])
    print(
        f"with diarization:  {both:6.2f} s  {len(result.sections)} segments  "
        f"(best of {args.repeat})"
    )
    print(f"real-time factor:  {seconds / both:6.1f}x")
    print(
        f"diarization adds:  {(both - plain) / plain:6.1%} of transcription "
        f"(alone, decode included: {alone:.2f} s = {alone / plain:.1%}; goal <= 25%)"
    )
    print(f"DER:               {der:6.1%}  (collar 0.25 s; goal <= 15%)")
    print(f"speakers found:    {found:6d}  (true: {args.voices})")
    print(f"peak RSS:          {peak:6.0f} MiB")


if __name__ == "__main__":
    main()
