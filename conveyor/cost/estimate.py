"""A month of the measured workload on Lambda, Fargate and an always-on instance.

How each platform is costed (prices and assumptions from :mod:`.prices`):

* **Lambda**, arm64 and x86_64: one function sized to the memory the largest
  job needed (worker + extraction child, times ``memory_headroom``, rounded up
  to 64 MB), billed for each job's measured seconds, plus requests and /tmp
  beyond the free 512 MB (sized to the largest input). Jobs past Lambda's
  limits cannot run there (:meth:`Workload.breaches`).
* **Fargate**, on-demand and Spot: a task of the smallest size (from
  ``fargate_min_vcpu`` up) whose memory holds the largest job; either an
  *always-on* service (enough tasks for the busy hours at
  ``target_utilisation``, idle the rest), or *scale-to-zero* on the backlog,
  where each burst also pays a task's start-up and the scale-in wait
  (``fargate_start_seconds`` + ``fargate_scale_in_seconds``).
* **An always-on instance**: the cheapest in the table that holds the largest
  job, as many as the busy hours need.

The recommendation takes the cheapest option that can run every job, then
prefers a simpler one (Lambda, then a Fargate service, then per-burst Fargate,
then an instance you patch) when it costs at most ``simpler_within_usd`` or
``simpler_within_share`` more. Durations are taken as measured: a platform
with slower CPUs runs longer.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from .prices import Prices
from .workload import Breach, Workload

MONTH_HOURS_KEY = "hours_per_month"
ARM_NOTE = "the image must be built for arm64 (onnxruntime, PyAV, Tesseract)"
SPOT_NOTE = "Spot may stop a task at 2 minutes' notice: its job goes back to the queue"
# Fargate's task sizes: vCPU → the memory (GB) it allows
FARGATE_SIZES: list[tuple[float, list[float]]] = [
    (0.25, [0.5, 1, 2]),
    (0.5, [1, 2, 3, 4]),
    (1, [float(g) for g in range(2, 9)]),
    (2, [float(g) for g in range(4, 17)]),
    (4, [float(g) for g in range(8, 31)]),
    (8, [float(g) for g in range(16, 61, 4)]),
    (16, [float(g) for g in range(32, 121, 8)]),
]


@dataclass(frozen=True)
class Option:
    """One way to run the workload, and what a month of it costs."""

    key: str
    name: str
    platform: str
    monthly: float
    size: str
    simplicity: float
    """Lower is simpler to run."""
    feasible: bool = True
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "name": self.name,
            "platform": self.platform,
            "monthly": round(self.monthly, 2),
            "size": self.size,
            "feasible": self.feasible,
            "notes": self.notes,
        }


@dataclass(frozen=True)
class Estimate:
    workload: Workload
    options: list[Option]
    breaches: list[Breach]
    recommended: Option
    reasons: list[str]
    ratios: dict[str, float]
    prices: Prices

    def as_dict(self) -> dict[str, Any]:
        return {
            "workload": self.workload.summary(),
            "options": [o.as_dict() for o in self.options],
            "lambda_limits": [b.as_dict() for b in self.breaches],
            "recommendation": {
                "platform": self.recommended.platform,
                "option": self.recommended.key,
                "name": self.recommended.name,
                "monthly": round(self.recommended.monthly, 2),
                "reasons": self.reasons,
            },
            "ratios": {k: round(v, 2) for k, v in self.ratios.items()},
            "prices": {
                "region": self.prices.region,
                "currency": self.prices.currency,
                "sources": self.prices.sources,
                "dates": sorted({p.date for p in self.prices.prices.values()}),
            },
        }


def fargate_size(memory_gb: float, min_vcpu: float) -> tuple[float, float] | None:
    """The smallest (vCPU, GB) task with at least ``memory_gb`` and ``min_vcpu``."""
    for vcpu, sizes in FARGATE_SIZES:
        if vcpu < min_vcpu:
            continue
        for gb in sizes:
            if gb >= memory_gb:
                return vcpu, gb
    return None


def _lambda(w: Workload, p: Prices, breaching: set[str]) -> list[Option]:
    fit = [j for j in w.jobs if str(j.document_id) not in breaching]
    if not fit:
        return []
    headroom = p.assume("memory_headroom")
    need = max(w.memory_of(j) for j in fit) * headroom
    memory = min(max(128, math.ceil(need / 64) * 64), int(p.assume("lambda_max_memory_mb")))
    seconds = sum(j.seconds for j in fit) * w.scale
    requests = len(fit) * w.scale
    tmp_mb = max(p.assume("lambda_free_tmp_mb"), max((j.input_bytes or 0) / 2**20 for j in fit))
    tmp_extra = (
        (tmp_mb - p.assume("lambda_free_tmp_mb")) / 1024 * seconds * p["lambda.tmp_gb_second"]
    )
    notes = []
    if breaching:
        notes.append(f"{len(w.jobs) - len(fit)} job(s) past Lambda's limits left out")
    out = []
    for arch in ("arm64", "x86_64"):
        monthly = (
            seconds * memory / 1024 * p[f"lambda.{arch}.gb_second"]
            + requests * p[f"lambda.{arch}.request"]
            + tmp_extra
        )
        out.append(
            Option(
                f"lambda-{arch}",
                f"Lambda {arch}",
                "lambda",
                monthly,
                f"{memory} MB, /tmp {math.ceil(tmp_mb)} MB",
                0.0 if arch == "x86_64" else 0.1,  # arm64: check the parsers' wheels first
                feasible=not breaching,
                notes=notes + ([ARM_NOTE] if arch == "arm64" else []),
            )
        )
    return out


def _fargate_rate(p: Prices, size: tuple[float, float], market: str) -> float:
    vcpu, gb = size
    key = "fargate.spot" if market == "spot" else "fargate.x86_64"
    return vcpu * p[f"{key}.vcpu_hour"] + gb * p[f"{key}.gb_hour"]


def _fargate(
    w: Workload, p: Prices, jobs_share: float = 1.0, busy: float | None = None
) -> list[Option]:
    need_gb = w.peak_memory_mb * p.assume("memory_headroom") / 1024
    size = fargate_size(need_gb, p.assume("fargate_min_vcpu"))
    if size is None:
        return []
    hours = p.assume(MONTH_HOURS_KEY)
    busy_s = w.busy_seconds_per_month if busy is None else busy
    busy_h = busy_s / 3600
    tasks = max(1, math.ceil(busy_h / (hours * p.assume("target_utilisation"))))
    idle = max(0.0, 1 - busy_h / (tasks * hours))
    jobs = w.jobs_per_month * jobs_share
    gap = hours * 3600 / max(jobs, 1e-9)
    mean = busy_s / max(jobs, 1e-9)
    tail = p.assume("fargate_start_seconds") + p.assume("fargate_scale_in_seconds")
    burst_h = min(tasks * hours, (busy_s + jobs * min(max(0.0, gap - mean), tail)) / 3600)
    label = f"{size[0]:g} vCPU, {size[1]:g} GB"
    out = []
    for market, extra in (("on-demand", 0.0), ("spot", 0.5)):
        rate = _fargate_rate(p, size, market)
        spot = [SPOT_NOTE] if market == "spot" else []
        out.append(
            Option(
                f"fargate-always-on-{market}",
                f"Fargate service, always on, {market}",
                "fargate",
                tasks * hours * rate,
                f"{label} × {tasks} task(s)",
                1.0 + extra,
                notes=[f"idle {idle:.0%} of the time", *spot],
            )
        )
        out.append(
            Option(
                f"fargate-scale-to-zero-{market}",
                f"Fargate, scaled to zero on the backlog, {market}",
                "fargate",
                burst_h * rate,
                f"{label}, {burst_h:,.1f} task-hours",
                2.0 + extra,
                notes=[
                    *spot,
                    f"each burst waits ~{p.assume('fargate_start_seconds'):g} s for a task "
                    f"and keeps it {p.assume('fargate_scale_in_seconds'):g} s after",
                ],
            )
        )
    return out


def _instance(w: Workload, p: Prices) -> list[Option]:
    need_gb = w.peak_memory_mb * p.assume("memory_headroom") / 1024
    hours = p.assume(MONTH_HOURS_KEY)
    busy_h = w.busy_seconds_per_month / 3600
    best: Option | None = None
    for inst in p.instances:
        if inst.memory_gb < need_gb:
            continue
        slots = max(1, int(min(inst.vcpu, inst.memory_gb // need_gb)))
        count = max(1, math.ceil(busy_h / (hours * p.assume("target_utilisation") * slots)))
        idle = max(0.0, 1 - busy_h / (count * slots * hours))
        option = Option(
            "instance",
            f"always-on instance ({inst.name})",
            "instance",
            count * inst.hourly * hours,
            f"{inst.name} × {count}, {slots} job(s) at once each",
            3.0,
            notes=[f"idle {idle:.0%} of the time; you patch and watch it"],
        )
        if best is None or option.monthly < best.monthly:
            best = option
    return [best] if best else []


def _split(w: Workload, p: Prices, breaching: set[str], lam: list[Option]) -> list[Option]:
    """Short jobs on Lambda, long ones routed to Fargate (CONVEYOR_LONG_QUEUE_URL)."""
    if not breaching or not lam:
        return []
    long_jobs = [j for j in w.jobs if str(j.document_id) in breaching]
    share = len(long_jobs) / len(w.jobs)
    busy = sum(j.seconds for j in long_jobs) * w.scale
    fargate = {o.key: o for o in _fargate(w, p, share, busy)}
    long = fargate.get("fargate-scale-to-zero-on-demand")
    if long is None:
        return []
    short = min(lam, key=lambda o: o.monthly)
    return [
        Option(
            "lambda-with-long-queue",
            "Lambda, long jobs routed to Fargate",
            "lambda+fargate",
            short.monthly + long.monthly,
            f"{short.size}; long queue on {long.size}",
            1.5,
            notes=["set CONVEYOR_LONG_QUEUE_URL; ECS workers serve the long queue"],
        )
    ]


def estimate(workload: Workload, prices: Prices) -> Estimate:
    """Every option, the jobs past Lambda's limits, and the recommendation with reasons."""
    breaches = workload.breaches(prices)
    breaching = {b.document_id for b in breaches}
    lam = _lambda(workload, prices, breaching)
    fargate = _fargate(workload, prices)
    options = lam + fargate + _instance(workload, prices) + _split(workload, prices, breaching, lam)
    feasible = [o for o in options if o.feasible] or options
    cheapest = min(feasible, key=lambda o: o.monthly)
    margin = max(
        prices.assume("simpler_within_usd"),
        prices.assume("simpler_within_share") * cheapest.monthly,
    )
    close = [o for o in feasible if o.monthly <= cheapest.monthly + margin]
    chosen = min(close, key=lambda o: (o.simplicity, o.monthly))
    by_key = {o.key: o for o in options}
    ratios = {}
    always = by_key.get("fargate-always-on-on-demand")
    for arch in ("x86_64", "arm64"):
        lam_option = by_key.get(f"lambda-{arch}")
        if always and lam_option and lam_option.monthly > 0:
            ratios[f"fargate_always_on/lambda_{arch}"] = always.monthly / lam_option.monthly
    reasons = _reasons(workload, prices, breaches, chosen, cheapest, by_key)
    return Estimate(workload, options, breaches, chosen, reasons, ratios, prices)


def _reasons(
    w: Workload,
    p: Prices,
    breaches: list[Breach],
    chosen: Option,
    cheapest: Option,
    by_key: dict[str, Option],
) -> list[str]:
    out = []
    if breaches:
        jobs = len({b.document_id for b in breaches})
        worst = max(breaches, key=lambda b: b.over / b.allowed)
        out.append(f"{jobs} of {len(w.jobs)} jobs break Lambda's limits; worst: {worst.describe()}")
    else:
        longest = max(j.seconds for j in w.jobs)
        largest = max((j.input_bytes or 0) for j in w.jobs) / 2**20
        out.append(
            f"every job fits Lambda's limits: longest {longest / 60:.1f} of "
            f"{p.assume('lambda_max_seconds') / 60:g} min, peak memory "
            f"{w.peak_memory_mb:,.0f} MB of {p.assume('lambda_max_memory_mb'):,.0f}, "
            f"largest input {largest:,.1f} MB of {p.assume('lambda_max_tmp_mb'):,.0f} /tmp"
        )
    out.append(f"{chosen.name}: ${chosen.monthly:,.2f} a month ({chosen.size})")
    if chosen is not cheapest:
        out.append(
            f"{cheapest.name} would save ${chosen.monthly - cheapest.monthly:,.2f} a month "
            f"(${cheapest.monthly:,.2f}), too little to be worth what it asks"
            + (f": {cheapest.notes[-1]}" if cheapest.notes else "")
        )
    always = by_key.get("fargate-always-on-on-demand")
    if always is not None and chosen.key != always.key:
        out.append(
            f"an always-on Fargate service (on-demand) would cost ${always.monthly:,.2f} a month, "
            f"{always.monthly / max(chosen.monthly, 1e-9):,.1f}× as much ({always.notes[0]})"
        )
    out.append(
        f"scaled to {w.per_month:,.0f} documents a month from {w.documents} measured "
        f"({len(w.jobs)} jobs); prices of {p.region}, {min(x.date for x in p.prices.values())}"
    )
    return out
