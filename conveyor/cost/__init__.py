"""``conveyor cost``: what the measured workload costs a month on Lambda, Fargate or an
instance, which jobs break Lambda's limits, and a recommendation with its reasons.

:mod:`.prices` (the dated table, overridable), :mod:`.workload` (the catalog's
measurements summed up, Lambda's limits checked), :mod:`.estimate` (the options
and the recommendation).
"""

from __future__ import annotations

from typing import Any

from .estimate import Estimate, Option, estimate
from .prices import Prices, load
from .workload import Breach, Workload

__all__ = ["Breach", "Estimate", "Option", "Prices", "Workload", "advise", "estimate", "load"]


def advise(
    catalog: Any,
    *,
    run: str | None = None,
    collection: str | None = None,
    since: float | None = None,
    per_month: float | None = None,
    prices: Prices | None = None,
) -> Estimate:
    """The estimate for the jobs the catalog measured that match the filters."""
    rows = catalog.measurements(run=run, collection=collection, since=since)
    return estimate(Workload.from_rows(rows, per_month), prices or load())
