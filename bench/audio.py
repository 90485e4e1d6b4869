"""Transcription speed: real-time factor of Whisper tiny.en (int8) on this CPU.

Generates speech with espeak-ng (varied sentences, ~--minutes long), then
times conveyor's audio extractor (PyAV decode in windows + faster-whisper
with VAD) and prints the real-time factor (seconds of audio per second of
wall time; goal >= 20x on 2 cores), the time spent decoding, and the peak
memory of the process.

    python bench/audio.py                   # 5 minutes of speech
    python bench/audio.py --minutes 20 --threads 2
"""

from __future__ import annotations

import argparse
import io
import random
import resource
import subprocess
import time
import wave

import numpy as np

from conveyor.extract import extract
from conveyor.extract.audio import decode_windows, load_model
from conveyor.testing import prose

RATE = 16_000


def speech(minutes: float) -> bytes:
    rng = random.Random(7)
    parts, total = [], 0
    while total < minutes * 60 * RATE:
        text = prose(rng.randrange(10_000), 40)
        out = subprocess.run(
            ["espeak-ng", "-s", "160", "--stdout", text], check=True, capture_output=True
        ).stdout
        with wave.open(io.BytesIO(out)) as w:
            raw = np.frombuffer(w.readframes(w.getnframes()), dtype=np.int16)
            rate = w.getframerate()
        idx = np.arange(0, len(raw) - 1, rate / RATE)
        parts.append(np.interp(idx, np.arange(len(raw)), raw).astype(np.int16))
        parts.append(np.zeros(int(0.6 * RATE), dtype=np.int16))
        total += len(parts[-2]) + len(parts[-1])
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(RATE)
        w.writeframes(np.concatenate(parts).tobytes())
    return buffer.getvalue()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=5.0)
    parser.add_argument("--threads", type=int, default=0, help="Whisper CPU threads (0: all)")
    parser.add_argument("--model", default="tiny.en")
    args = parser.parse_args()

    data = speech(args.minutes)
    seconds = (len(data) - 44) / 2 / RATE
    print(f"audio: {seconds / 60:.1f} min of espeak-ng speech, WAV {len(data) / 1e6:.1f} MB")

    t = time.perf_counter()
    load_model(args.model, "int8", args.threads)
    print(f"model load:        {time.perf_counter() - t:6.2f} s (once per worker)")

    t = time.perf_counter()
    for _ in decode_windows(data, 600.0):
        pass
    decode_s = time.perf_counter() - t

    t = time.perf_counter()
    result = extract(data, options={"whisper_model": args.model, "threads": args.threads})
    wall = time.perf_counter() - t
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"transcribe:        {wall:6.2f} s  {len(result.sections)} segments")
    print(f"  of which decode: {decode_s:6.2f} s")
    print(f"real-time factor:  {seconds / wall:6.1f}x  (goal >= 20x)")
    print(f"peak RSS:          {peak:6.0f} MiB")


if __name__ == "__main__":
    main()
