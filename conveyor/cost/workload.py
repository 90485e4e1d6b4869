"""The observed workload: the jobs' measurements summed up, and Lambda's limits checked.

Built from the catalog's records (:mod:`conveyor.measure`); nothing here guesses
what was not measured, except that a job whose memory was not measured (no
``/proc``) counts as needing :data:`UNMEASURED_MB`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ..exceptions import ConveyorError
from ..measure import Measurement
from .prices import Prices

UNMEASURED_MB = 512.0


@dataclass(frozen=True)
class Breach:
    """One job past one of Lambda's limits, and by how much."""

    document_id: str
    limit: str
    """``duration``, ``memory`` or ``tmp``."""
    value: float
    allowed: float
    unit: str

    @property
    def over(self) -> float:
        return self.value - self.allowed

    def describe(self) -> str:
        if self.unit == "s":
            return (
                f"{self.value / 60:.1f} min, {self.over / 60:.1f} min over Lambda's "
                f"{self.allowed / 60:g} min"
            )
        return (
            f"{self.limit} {self.value:,.0f} MB, {self.over:,.0f} MB over Lambda's "
            f"{self.allowed:,.0f} MB"
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "document_id": self.document_id,
            "limit": self.limit,
            "value": round(self.value, 1),
            "allowed": self.allowed,
            "over": round(self.over, 1),
            "unit": self.unit,
            "text": self.describe(),
        }


@dataclass(frozen=True)
class Workload:
    """The measured jobs, and what a month of them at the stated volume means."""

    jobs: list[Measurement]
    per_month: float
    """Documents a month the costs are scaled to."""

    @classmethod
    def from_rows(cls, rows: Sequence[dict[str, Any]], per_month: float | None) -> Workload:
        jobs = [Measurement.from_row(dict(r)) for r in rows]
        if not jobs:
            raise ConveyorError(
                "no measured jobs match (nothing ingested since measurements began, or "
                "--run/--since/--collection leave none out): ingest something first"
            )
        if per_month is not None and per_month <= 0:
            raise ConveyorError(f"--per-month must be positive, not {per_month:g}")
        documents = len({j.document_id for j in jobs})
        return cls(jobs, float(per_month if per_month is not None else documents))

    @property
    def documents(self) -> int:
        return len({j.document_id for j in self.jobs})

    @property
    def scale(self) -> float:
        """Measured jobs → a month's: per_month documents over the documents measured."""
        return self.per_month / self.documents

    @property
    def jobs_per_month(self) -> float:
        return len(self.jobs) * self.scale

    @property
    def busy_seconds_per_month(self) -> float:
        return sum(j.seconds for j in self.jobs) * self.scale

    @staticmethod
    def memory_of(job: Measurement) -> float:
        return job.memory_mb if job.memory_mb is not None else UNMEASURED_MB

    @property
    def peak_memory_mb(self) -> float:
        return max(self.memory_of(j) for j in self.jobs)

    @property
    def peak_concurrency(self) -> int:
        """Most jobs that ran at once, by their start and finish times."""
        edges = sorted(
            [(j.started_at, 1) for j in self.jobs] + [(j.finished_at, -1) for j in self.jobs],
            key=lambda e: (e[0], e[1]),
        )
        running = peak = 0
        for _, step in edges:
            running += step
            peak = max(peak, running)
        return peak

    def breaches(self, prices: Prices) -> list[Breach]:
        """Every job past Lambda's time, memory or /tmp limit (its input must fit /tmp)."""
        limits = (
            ("duration", prices.assume("lambda_max_seconds"), "s"),
            ("memory", prices.assume("lambda_max_memory_mb"), "MB"),
            ("tmp", prices.assume("lambda_max_tmp_mb"), "MB"),
        )
        out = []
        for job in self.jobs:
            values = {
                "duration": job.seconds,
                "memory": self.memory_of(job) * prices.assume("memory_headroom"),
                "tmp": (job.input_bytes or 0) / 2**20,
            }
            for limit, allowed, unit in limits:
                if values[limit] > allowed:
                    out.append(Breach(str(job.document_id), limit, values[limit], allowed, unit))
        return out

    def summary(self) -> dict[str, Any]:
        seconds = sorted(j.seconds for j in self.jobs)
        kinds: dict[str, int] = {}
        for j in self.jobs:
            kinds[j.kind or "unknown"] = kinds.get(j.kind or "unknown", 0) + 1
        return {
            "jobs": len(self.jobs),
            "documents": self.documents,
            "kinds": kinds,
            "seconds": {
                "total": round(sum(seconds), 1),
                "median": round(seconds[len(seconds) // 2], 2),
                "p95": round(seconds[min(len(seconds) - 1, math.ceil(0.95 * len(seconds)) - 1)], 2),
                "max": round(seconds[-1], 2),
            },
            "peak_memory_mb": round(self.peak_memory_mb, 1),
            "peak_concurrency": self.peak_concurrency,
            "input_bytes": sum(j.input_bytes or 0 for j in self.jobs),
            "pages": sum(j.pages or 0 for j in self.jobs),
            "audio_minutes": round(sum(j.audio_seconds or 0 for j in self.jobs) / 60, 1),
            "tokens": sum(j.tokens or 0 for j in self.jobs),
            "per_month": self.per_month,
            "jobs_per_month": round(self.jobs_per_month, 1),
        }
