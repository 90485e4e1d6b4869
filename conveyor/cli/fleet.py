"""Running it for real: ``conveyor cost`` (what the measured jobs cost where) and
``conveyor scale-hint`` (how many workers the backlog wants)."""

from __future__ import annotations

import json
import re
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click

from ..exceptions import ConveyorError
from .common import _open, handle_errors, home_option, main

_AGO = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_since(text: str, now: float | None = None) -> float:
    """``7d``, ``24h``, ``30m`` (that long ago) or an ISO date/time (UTC unless it says)."""
    found = _AGO.match(text)
    if found:
        return (now or time.time()) - float(found.group(1)) * _UNITS[found.group(2)]
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ConveyorError(
            f"--since {text!r} is neither a duration (7d, 24h, 30m) nor a date (2026-11-01)"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


@main.command()
@home_option
@click.option("--run", default=None, help="Only the jobs of this run.")
@click.option("--collection", "-c", default=None, help="Only the jobs of this collection.")
@click.option("--since", default=None, help="Only jobs finished since: 7d, 24h, or a date.")
@click.option(
    "--per-month",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    help="Documents a month to cost [default: the documents measured, as one month].",
)
@click.option(
    "--prices",
    "prices_file",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="JSON or TOML file of prices/assumptions over the packaged table.",
)
@click.option("--json", "as_json", is_flag=True, help="Write the estimate as JSON.")
@handle_errors
def cost(
    home: Path | None,
    run: str | None,
    collection: str | None,
    since: str | None,
    per_month: float | None,
    prices_file: Path | None,
    as_json: bool,
) -> None:
    """What the measured jobs would cost a month on Lambda, Fargate or an instance.

    Every job's duration, peak memory (worker and extraction child) and input
    size are in the catalog; this costs them with a dated price table (AWS
    us-east-1, shipped in the package; --prices overrides any of it), flags
    the jobs past Lambda's limits (15 min, 10 GB memory, 10 GB /tmp) and
    recommends a platform, with its reasons.

    \b
    Examples:
      conveyor cost                          # the jobs measured, as one month
      conveyor cost --since 30d --per-month 10000
      conveyor cost --run nightly --json
      conveyor cost --prices my-prices.toml  # e.g. [prices] "lambda.arm64.gb_second" = 0.0000112
    """
    from ..cost import advise, load

    prices = load(prices_file)
    with _open(home) as cv:
        result = advise(
            cv.components.catalog,
            run=run,
            collection=collection,
            since=parse_since(since) if since else None,
            per_month=per_month,
            prices=prices,
        )
    if as_json:
        click.echo(json.dumps(result.as_dict(), indent=2))
        return
    _print_estimate(result.as_dict())


def _print_estimate(data: dict[str, Any]) -> None:
    w = data["workload"]
    click.echo(
        f"measured: {w['jobs']} jobs of {w['documents']} documents "
        f"({', '.join(f'{k} {n}' for k, n in sorted(w['kinds'].items()))}); "
        f"median {w['seconds']['median']:g} s, longest {w['seconds']['max']:g} s, "
        f"peak memory {w['peak_memory_mb']:,.0f} MB, at most {w['peak_concurrency']} at once"
    )
    click.echo(
        f"costed for {w['per_month']:,.0f} documents a month ({w['jobs_per_month']:,.0f} jobs)"
    )
    click.echo("")
    width = max(len(o["name"]) for o in data["options"])
    for o in sorted(data["options"], key=lambda o: o["monthly"]):
        mark = "" if o["feasible"] else "  (cannot run every job)"
        click.echo(f"  {o['name']:<{width}}  ${o['monthly']:>10,.2f}/month  {o['size']}{mark}")
    limits = data["lambda_limits"]
    if limits:
        click.echo("")
        click.echo(f"past Lambda's limits ({len(limits)}):")
        for b in limits[:10]:
            click.echo(f"  {b['document_id']}: {b['text']}")
        if len(limits) > 10:
            click.echo(f"  … and {len(limits) - 10} more (--json lists all)")
    r = data["recommendation"]
    click.echo("")
    click.echo(f"recommended: {r['name']} (${r['monthly']:,.2f}/month)")
    for reason in r["reasons"]:
        click.echo(f"  - {reason}")


@main.command("scale-hint")
@home_option
@click.option(
    "--per-worker",
    type=click.FloatRange(min=0, min_open=True),
    required=True,
    help="Jobs (waiting and running) one worker should have.",
)
@click.option("--min", "minimum", type=click.IntRange(0), default=0, help="Fewest workers.")
@click.option("--max", "maximum", type=click.IntRange(1), default=None, help="Most workers.")
@click.option("--json", "as_json", is_flag=True, help="The count and the signals as JSON.")
@handle_errors
def scale_hint(
    home: Path | None, per_worker: float, minimum: int, maximum: int | None, as_json: bool
) -> None:
    """Print how many workers the queue wants now: (visible + in flight) / --per-worker.

    The same signals /metrics exports (oldest visible job's age, backlog per
    live worker, pending tokens); for an autoscaler without Prometheus (a cron
    job calling `aws ecs update-service --desired-count`, a script).

    \b
    Examples:
      conveyor scale-hint --per-worker 8               # prints e.g. 3
      conveyor scale-hint --per-worker 8 --max 20 --json
      aws ecs update-service --cluster c --service workers \\
        --desired-count "$(conveyor scale-hint --per-worker 8 --max 20)"
    """
    from ..scaling import signals
    from ..worker import stale_after

    with _open(home) as cv:
        c = cv.components
        now = signals(c.queue, c.catalog, stale_after=stale_after(cv.settings.visibility_timeout))
        want = now.desired(per_worker, minimum, maximum)
    if as_json:
        click.echo(json.dumps({"desired_workers": want, "per_worker": per_worker, **now.as_dict()}))
    else:
        click.echo(str(want))
