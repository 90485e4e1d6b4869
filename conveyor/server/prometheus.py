"""Prometheus' text exposition format, by hand: a few families need no client library.

:class:`Exposition` collects families (``# HELP``, ``# TYPE``, samples) and renders
them; :class:`Histogram` keeps cumulative buckets per label set. Label values are
escaped as the format requires (backslash, double quote, newline), so a worker id or
a host name cannot break the output.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterable, Mapping, Sequence

Labels = Mapping[str, object]


def escape(value: object) -> str:
    return str(value).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def labels_text(labels: Labels | None) -> str:
    if not labels:
        return ""
    return "{" + ",".join(f'{k}="{escape(v)}"' for k, v in labels.items()) + "}"


def number(value: float) -> str:
    if isinstance(value, int):
        return str(value)
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return f"{value:.6g}" if abs(value) < 1e15 else repr(float(value))


class Exposition:
    """Families in the order added, rendered as one text document."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def family(
        self,
        name: str,
        kind: str,
        help_text: str,
        samples: Iterable[tuple[Labels | None, float]] = (),
    ) -> None:
        self.lines += [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}"]
        for labels, value in samples:
            self.lines.append(f"{name}{labels_text(labels)} {number(value)}")

    def histogram(self, name: str, help_text: str, histogram: Histogram) -> None:
        self.lines += [f"# HELP {name} {help_text}", f"# TYPE {name} histogram"]
        self.lines += histogram.lines(name)

    def render(self) -> str:
        return "\n".join(self.lines) + "\n"


class Histogram:
    """Observations bucketed per label set; thread-safe."""

    def __init__(self, buckets: Sequence[float], label: str) -> None:
        self.buckets = tuple(sorted(buckets))
        self.label = label
        self._series: dict[str, tuple[list[int], list[float]]] = {}
        self._lock = threading.Lock()

    def observe(self, value: str, seconds: float) -> None:
        with self._lock:
            counts, total = self._series.setdefault(value, ([0] * (len(self.buckets) + 1), [0.0]))
            index = next((i for i, b in enumerate(self.buckets) if seconds <= b), -1)
            counts[index] += 1
            total[0] += seconds

    def lines(self, name: str) -> list[str]:
        out = []
        with self._lock:
            for value in sorted(self._series):
                counts, total = self._series[value]
                cumulative = 0
                for bound, n in zip(self.buckets, counts, strict=False):
                    cumulative += n
                    le = labels_text({self.label: value, "le": number(bound)})
                    out.append(f"{name}_bucket{le} {cumulative}")
                count = sum(counts)
                out.append(f"{name}_bucket{labels_text({self.label: value, 'le': '+Inf'})} {count}")
                out.append(f"{name}_sum{labels_text({self.label: value})} {total[0]:.6f}")
                out.append(f"{name}_count{labels_text({self.label: value})} {count}")
        return out
