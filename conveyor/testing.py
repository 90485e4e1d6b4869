"""Fakes for fast unit tests: a deterministic embedder and a whitespace tokenizer.

They are shipped in the package so that apps built on conveyor can test
without the model. The real model and real backends are tested too.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence

import numpy as np

from .embedding import l2_normalise

_WORD = re.compile(r"\w+|[^\w\s]", re.UNICODE)


class WhitespaceTokenizer:
    """Words and punctuation marks are tokens; spans are exact."""

    def __init__(self, max_tokens: int = 254) -> None:
        self.max_tokens = max_tokens

    def offsets(self, text: str) -> list[tuple[int, int]]:
        return [m.span() for m in _WORD.finditer(text)]

    def count(self, texts: Sequence[str]) -> list[int]:
        return [len(_WORD.findall(t)) for t in texts]


class FakeEmbedder:
    """Bag-of-words hashed into ``dim`` buckets: texts sharing words are close.

    Deterministic across processes; counts calls and texts for assertions.
    """

    backend = "fake"

    def __init__(self, dim: int = 32, model_id: str = "fake/bag-of-words") -> None:
        self.model_id = model_id
        self._dim = dim
        self.calls = 0
        self.texts = 0
        self.tokenizer = WhitespaceTokenizer()

    @property
    def dim(self) -> int:
        return self._dim

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        self.calls += 1
        self.texts += len(texts)
        out = np.zeros((len(texts), self._dim), dtype=np.float32)
        for row, text in enumerate(texts):
            for word in _WORD.findall(text.lower()):
                digest = hashlib.blake2b(word.encode(), digest_size=8).digest()
                out[row, int.from_bytes(digest[:4], "little") % self._dim] += 1.0
            if not out[row].any():
                out[row, 0] = 1.0
        return l2_normalise(out)

    def load(self) -> None:
        """Nothing to load."""

    def close(self) -> None:
        """Nothing to release."""


_SUBJECTS = (
    "the billing service",
    "our on-call engineer",
    "the storage team",
    "a nightly export",
    "the load balancer",
    "every new customer",
    "the mobile app",
    "the search index",
    "the finance department",
    "a retired alert route",
    "the primary database",
    "the vendor",
    "the security review",
    "each warehouse robot",
    "the marketing site",
    "the support desk",
    "the payroll system",
    "the kitchen staff",
    "a delivery drone",
    "the city council",
)
_VERBS = (
    "rotates",
    "archives",
    "rejects",
    "schedules",
    "measures",
    "replicates",
    "audits",
    "forecasts",
    "summarises",
    "encrypts",
    "throttles",
    "reviews",
    "migrates",
    "repairs",
    "photographs",
    "negotiates",
    "compresses",
    "recalculates",
    "inspects",
    "publishes",
)
_OBJECTS = (
    "the quarterly invoices",
    "stale cache entries",
    "customer refunds",
    "disk usage alerts",
    "the shipping manifests",
    "expired certificates",
    "the holiday roster",
    "sensor readings",
    "the tax filings",
    "duplicate orders",
    "the training budget",
    "failed login attempts",
    "river water samples",
    "the conference agenda",
    "broken bicycle parts",
    "loan applications",
    "the seed catalogue",
    "satellite images",
    "the fire drill plan",
    "vintage wine labels",
)
_TAILS = (
    "before the end of the month",
    "whenever the queue grows too long",
    "with great care",
    "after every deployment",
    "under the new policy",
    "despite the heavy rain",
    "at two in the morning",
    "to keep the auditors happy",
    "without telling anyone",
    "as the contract requires",
    "so that nothing is lost",
    "in three separate regions",
)


def prose(seed: int, words: int = 2000) -> str:
    """Deterministic, varied English-like prose of about ``words`` words, in paragraphs."""
    import random

    rng = random.Random(seed)
    paragraphs: list[str] = []
    count = 0
    while count < words:
        sentences = []
        for _ in range(rng.randint(3, 7)):
            sentence = (
                f"{rng.choice(_SUBJECTS)} {rng.choice(_VERBS)} {rng.choice(_OBJECTS)} "
                f"{rng.choice(_TAILS)}"
            )
            if rng.random() < 0.3:
                sentence += (
                    f", and {rng.choice(_SUBJECTS)} {rng.choice(_VERBS)} {rng.choice(_OBJECTS)}"
                )
            sentences.append(sentence[0].upper() + sentence[1:] + ".")
            count += len(sentence.split())
        paragraphs.append(" ".join(sentences))
    return "\n\n".join(paragraphs) + "\n"


def make_pdf(
    path: str,
    pages: list[str],
    *,
    title: str | None = None,
    author: str | None = None,
    link: str | None = None,
) -> None:
    """A text PDF with one page per string (needs reportlab, a dev dependency)."""
    import textwrap

    from reportlab.lib.pagesizes import A4
    from reportlab.pdfgen import canvas

    c = canvas.Canvas(path, pagesize=A4)
    if title:
        c.setTitle(title)
    if author:
        c.setAuthor(author)
    for text in pages:
        y = 800.0
        for paragraph in text.split("\n"):
            for line in textwrap.wrap(paragraph, 90) or [""]:
                if y < 60:
                    c.showPage()
                    y = 800.0
                c.drawString(50, y, line)
                y -= 14
        if link:
            c.linkURL(link, (50, 40, 300, 55))
        c.showPage()
    c.save()


def spoken(text: str, voice: str = "en-us", rate: int = 160) -> np.ndarray:
    """``text`` said by espeak-ng (``make test`` installs it) as 16 kHz mono int16 samples."""
    import io
    import subprocess
    import wave

    out = subprocess.run(
        ["espeak-ng", "-v", voice, "-s", str(rate), "--stdout", text],
        check=True,
        capture_output=True,
    ).stdout
    with wave.open(io.BytesIO(out)) as w:
        raw = np.frombuffer(w.readframes(w.getnframes()), dtype=np.int16).astype(np.float32)
        source_rate = w.getframerate()
    at = np.arange(0, len(raw) - 1, source_rate / 16_000)  # resample to 16 kHz (linear)
    return np.interp(at, np.arange(len(raw)), raw).astype(np.int16)


def conversation(
    voices: Sequence[str],
    seconds: float,
    seed: int = 0,
    shortest: float = 3.0,
    longest: float = 15.0,
) -> tuple[np.ndarray, list[tuple[float, float, str]]]:
    """A generated conversation: espeak-ng ``voices`` taking turns of ``shortest``–``longest``
    seconds (never the same voice twice in a row), with short pauses between, for about
    ``seconds``. Returns 16 kHz int16 samples and the true turns ``(start, end, voice)``."""
    import random

    rng = random.Random(seed)
    parts: list[np.ndarray] = []
    turns: list[tuple[float, float, str]] = []
    position, previous = 0, ""
    while position < seconds * 16_000:
        voice = rng.choice([v for v in voices if v != previous] or list(voices))
        wanted = rng.uniform(shortest, longest)
        words = prose(rng.randrange(1_000_000), 60).split()
        count = max(4, round(wanted * 2.6))  # espeak-ng says about 2.6 words a second here
        samples = spoken(" ".join(words[:count]), voice)
        loud = np.flatnonzero(np.abs(samples) > 300)  # the turn is its speech, not espeak's pauses
        samples = samples[loud[0] : loud[-1] + 1] if len(loud) else samples
        if len(samples) > longest * 16_000:
            samples = samples[: int(longest * 16_000)]
        turns.append((position / 16_000, (position + len(samples)) / 16_000, voice))
        pause = np.zeros(int(rng.uniform(0.2, 0.8) * 16_000), dtype=np.int16)
        parts += [samples, pause]
        position += len(samples) + len(pause)
        previous = voice
    return np.concatenate(parts), turns


def wav(samples: np.ndarray, rate: int = 16_000) -> bytes:
    """Mono 16-bit ``samples`` as the bytes of a WAV file."""
    import io
    import wave

    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(samples.astype(np.int16).tobytes())
    return buffer.getvalue()


MANUAL = [
    ("1 Introduction", 0, "This manual explains how to keep the bicycle safe to ride."),
    ("2 Maintenance", 0, "Check the whole bicycle every month before a long ride."),
    (
        "2.1 Brakes",
        1,
        "Replace the brake pads when the groove is worn away. Torque the caliper "
        "bolts to six newton metres.",
    ),
    ("2.2 Chain", 1, "Oil the chain every two hundred kilometres and wipe off what is left."),
    ("3 Warranty", 0, "The frame is guaranteed for five years against defects."),
]
"""The sections of :func:`make_structured_pdf`: (heading, level, body)."""


def make_structured_pdf(
    path: str, *, outline: bool = True, title: str | None = "Bike Manual", body_lines: int = 3
) -> None:
    """A PDF of :data:`MANUAL`: headings in bold (18 pt top level, 14 pt below) over 10 pt
    text, ``2.1 Brakes`` starting page 2 and ``3 Warranty`` page 3; with ``outline``, a
    bookmark per heading. Page 2 has a web link and a link to page 1; page 3 a link to
    a named destination on page 2. A running footer repeats on every page."""
    import textwrap

    from reportlab.lib.pagesizes import A4
    from reportlab.pdfgen import canvas

    c = canvas.Canvas(path, pagesize=A4)
    if title:
        c.setTitle(title)
    y = 800.0
    for n, (heading, level, body) in enumerate(MANUAL):
        if n in (2, 4):
            c.setFont("Helvetica", 8)
            c.drawString(50, 20, "Acme Bikes - service manual")
            c.showPage()
            y = 800.0
        c.setFont("Helvetica-Bold", 18 if level == 0 else 14)
        c.drawString(50, y, heading)
        key = f"h{n}"
        c.bookmarkPage(key, fit="XYZ", top=y + 20)
        if outline:
            c.addOutlineEntry(heading, key, level=level)
        y -= 28
        c.setFont("Helvetica", 10)
        for _ in range(body_lines):
            for line in textwrap.wrap(body, 90):
                c.drawString(50, y, line)
                y -= 14
        y -= 12
        if n == 2:
            c.linkURL("https://example.com/brakes", (50, 60, 300, 75))
            c.linkAbsolute("back to the introduction", "h0", (50, 80, 300, 95))
        if n == 4:
            c.linkAbsolute("see the brakes", "h2", (50, 60, 300, 75))
    c.setFont("Helvetica", 8)
    c.drawString(50, 20, "Acme Bikes - service manual")
    c.showPage()
    c.save()
