"""``conveyor cost`` on workloads recorded in a real catalog, as workers record them.

Two shapes from users' moves between platforms: a team that left an always-on
Fargate service for Lambda (short recordings, one at a time, a few hundred a
month: about $23.76 → $4.70, ~5×), and one whose 40-minute jobs cannot run on
Lambda at all.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
from click.testing import CliRunner

from conveyor.catalog import SqliteCatalog
from conveyor.cli import main
from conveyor.cli.fleet import parse_since
from conveyor.cost import Workload, estimate, load
from conveyor.cost.estimate import fargate_size
from conveyor.exceptions import ConveyorError
from conveyor.measure import Measurement
from conveyor.settings import Settings

T0 = 1_790_000_000.0


def _record_recordings(
    home: Path, n: int, minutes: tuple[float, float], speed: float, memory: float, gap: float
) -> None:
    """``n`` recordings, one at a time (``gap`` seconds apart), transcribed at ``speed``×
    real time after a 15 s model load; the worker's peak ``memory`` MB plus a child's."""
    catalog = SqliteCatalog(Settings(home=home).database_path)
    rng = random.Random(7)
    for i in range(n):
        audio = rng.uniform(*minutes) * 60
        seconds = 15 + audio / speed
        started = T0 + i * gap
        catalog.record_measurement(
            Measurement(
                document_id=f"doc{i}",
                job_id=f"job{i}",
                collection="calls",
                run="r1" if i % 2 else "r2",
                kind="audio",
                outcome="merge",
                runtime="worker",
                worker="host:1",
                started_at=started,
                finished_at=started + seconds,
                seconds=seconds,
                input_bytes=int(audio * 16_000),  # 128 kbit/s
                audio_seconds=audio,
                chunks=int(audio / 30),
                tokens=int(audio * 2.5),
                child_peak_mb=rng.uniform(0.8, 1.0) * memory * 0.4,
                worker_peak_mb=memory * 0.6,
                stages={"fetch": 0.2, "extract": seconds - 2, "embed": 1.5},
            ).as_dict()
        )
    catalog.close()


def _cost(home: Path, *args: str) -> dict:
    result = CliRunner().invoke(main, ["cost", "--home", str(home), "--json", *args])
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def test_short_recordings_one_at_a_time_recommend_lambda(tmp_path: Path) -> None:
    home = tmp_path / "home"
    # 40 measured: 5–12 minute recordings at 3× real time, ~2.2 GB, hours apart
    _record_recordings(home, 40, (5, 12), speed=3, memory=2200, gap=6 * 3600)
    data = _cost(home, "--per-month", "400")
    assert data["workload"]["jobs"] == 40 and data["workload"]["peak_concurrency"] == 1
    assert data["lambda_limits"] == []
    rec = data["recommendation"]
    assert rec["platform"] == "lambda", rec
    ratio = data["ratios"]["fargate_always_on/lambda_x86_64"]
    assert 2.5 <= ratio <= 15, ratio  # the team's move: $23.76 → $4.70, 5.1×
    options = {o["key"]: o for o in data["options"]}
    always = options["fargate-always-on-on-demand"]
    assert always["monthly"] == pytest.approx(23.76, rel=0.5)  # one small task all month
    assert options["lambda-x86_64"]["monthly"] == pytest.approx(4.70, rel=0.6)
    assert options["lambda-arm64"]["monthly"] < options["lambda-x86_64"]["monthly"]
    assert "every job fits Lambda's limits" in rec["reasons"][0]
    assert any("idle 9" in r and "always-on Fargate" in r for r in rec["reasons"])
    # the text report says the same
    text = CliRunner().invoke(main, ["cost", "--home", str(home), "--per-month", "400"])
    assert text.exit_code == 0 and "recommended: Lambda" in text.output
    print(text.output)  # the README quotes it: pytest tests/unit/test_cost.py -s -k short
    # ten times the volume, ten times Lambda's bill; the always-on task still idles
    more = _cost(home, "--per-month", "4000")
    tenfold = {o["key"]: o["monthly"] for o in more["options"]}
    assert tenfold["lambda-x86_64"] == pytest.approx(
        options["lambda-x86_64"]["monthly"] * 10, rel=0.01
    )
    # one run of the two
    assert _cost(home, "--run", "r1")["workload"]["jobs"] == 20


def test_forty_minute_jobs_are_flagged_and_go_to_fargate(tmp_path: Path) -> None:
    home = tmp_path / "home"
    # 2-hour recordings at 3× real time: ~40 minutes each, one after another
    _record_recordings(home, 30, (115, 125), speed=3, memory=3000, gap=3600)
    data = _cost(home, "--per-month", "300")
    limits = data["lambda_limits"]
    assert len(limits) == 30 and {b["limit"] for b in limits} == {"duration"}
    assert all(38 * 60 < b["value"] < 43 * 60 for b in limits)
    assert all(b["over"] == pytest.approx(b["value"] - 900, abs=0.2) for b in limits)
    assert "min over Lambda's 15 min" in limits[0]["text"]
    rec = data["recommendation"]
    assert rec["platform"] == "fargate", rec
    assert rec["reasons"][0].startswith("30 of 30 jobs break Lambda's limits")
    assert not any(o["feasible"] for o in data["options"] if o["platform"] == "lambda")
    text = CliRunner().invoke(main, ["cost", "--home", str(home)])
    assert "past Lambda's limits (30)" in text.output and "recommended: Fargate" in text.output


def test_a_few_long_jobs_among_short_ones_route_the_long_ones(tmp_path: Path) -> None:
    home = tmp_path / "home"
    _record_recordings(home, 20, (5, 12), speed=3, memory=2200, gap=6 * 3600)
    catalog = SqliteCatalog(Settings(home=home).database_path)
    long = Measurement(
        document_id="long",
        kind="audio",
        outcome="merge",
        started_at=T0,
        finished_at=T0 + 2000,
        seconds=2000.0,
        worker_peak_mb=1500,
    )
    catalog.record_measurement(long.as_dict())
    data = _cost(home, "--per-month", "400")
    assert [b["document_id"] for b in data["lambda_limits"]] == ["long"]
    assert data["recommendation"]["platform"] == "lambda+fargate"
    assert any("CONVEYOR_LONG_QUEUE_URL" in n for o in data["options"] for n in o["notes"])


def test_prices_file_overrides_the_table(tmp_path: Path) -> None:
    home = tmp_path / "home"
    _record_recordings(home, 10, (5, 12), speed=3, memory=2200, gap=6 * 3600)
    base = _cost(home)
    table = tmp_path / "prices.toml"
    table.write_text('[prices]\n"lambda.x86_64.gb_second" = 0.00003333334\n')
    dearer = _cost(home, "--prices", str(table))
    lam = lambda d: {o["key"]: o["monthly"] for o in d["options"]}["lambda-x86_64"]  # noqa: E731
    assert lam(dearer) == pytest.approx(2 * lam(base), rel=0.01)
    assert str(table) in dearer["prices"]["sources"]
    bad = tmp_path / "bad.json"
    bad.write_text('{"prices": {"lambda.gpu": 1}}')
    result = CliRunner().invoke(main, ["cost", "--home", str(home), "--prices", str(bad)])
    assert result.exit_code == 2 and "unknown price 'lambda.gpu'" in result.output


def test_nothing_measured_is_a_clear_error(tmp_path: Path) -> None:
    home = tmp_path / "home"
    SqliteCatalog(Settings(home=home).database_path).close()
    result = CliRunner().invoke(main, ["cost", "--home", str(home)])
    assert result.exit_code == 2 and "no measured jobs match" in result.output
    with pytest.raises(ConveyorError, match="positive"):
        Workload.from_rows([Measurement(document_id="d").as_dict()], per_month=-1)


def test_the_table_is_dated_and_sourced() -> None:
    prices = load()
    assert all(p.date and p.source.startswith("https://") for p in prices.prices.values())
    assert prices["lambda.arm64.gb_second"] < prices["lambda.x86_64.gb_second"]
    assert prices["fargate.spot.vcpu_hour"] < prices["fargate.x86_64.vcpu_hour"]
    assert fargate_size(2.7, 0.5) == (0.5, 3) and fargate_size(5, 0.5) == (1, 5)
    assert fargate_size(200, 0.25) is None
    assert parse_since("2d", now=T0) == T0 - 2 * 86400
    assert parse_since("2026-11-01") == 1_793_491_200.0
    with pytest.raises(ConveyorError, match="--since"):
        parse_since("last tuesday")
    workload = Workload.from_rows([Measurement(document_id="d", seconds=1).as_dict()], None)
    assert estimate(workload, prices).recommended.platform == "lambda"
