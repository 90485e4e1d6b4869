"""The price table: dated prices with their source, and the assumptions costed by.

The package ships ``prices.json`` (AWS us-east-1 list prices, each with the date
it was read and the page it came from). ``conveyor cost --prices FILE`` (JSON or
TOML) overrides any subset: a price by its key (``"lambda.arm64.gb_second":
{"price": …}`` or just the number), an assumption by name, or the instance list
as a whole.
"""

from __future__ import annotations

import json
import tomllib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from ..exceptions import ConfigurationError


@dataclass(frozen=True)
class Price:
    price: float
    unit: str
    date: str
    source: str


@dataclass(frozen=True)
class Instance:
    name: str
    vcpu: float
    memory_gb: float
    hourly: float
    date: str = ""
    source: str = ""


@dataclass(frozen=True)
class Prices:
    """What ``conveyor cost`` multiplies by."""

    region: str
    currency: str
    prices: dict[str, Price]
    instances: list[Instance]
    assumptions: dict[str, float]
    sources: list[str] = field(default_factory=list)
    """The files read, the package's first."""

    def __getitem__(self, key: str) -> float:
        try:
            return self.prices[key].price
        except KeyError:
            raise ConfigurationError(f"the price table has no {key!r}") from None

    def assume(self, name: str) -> float:
        try:
            return float(self.assumptions[name])
        except KeyError:
            raise ConfigurationError(f"the price table has no assumption {name!r}") from None

    def as_dict(self) -> dict[str, Any]:
        return {
            "region": self.region,
            "currency": self.currency,
            "prices": {k: vars(p) for k, p in self.prices.items()},
            "instances": [vars(i) for i in self.instances],
            "assumptions": self.assumptions,
            "sources": self.sources,
        }


def _read(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigurationError(f"cannot read the price file {path}: {exc.strerror}") from None
    try:
        data = tomllib.loads(text) if path.suffix == ".toml" else json.loads(text)
    except (ValueError, tomllib.TOMLDecodeError) as exc:
        raise ConfigurationError(f"price file {path} is not valid: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigurationError(f"price file {path} must hold an object (a table)")
    return data


def _price(key: str, value: Any, old: Price | None, origin: str) -> Price:
    if isinstance(value, int | float) and not isinstance(value, bool):
        value = {"price": value}
    if not isinstance(value, dict) or not isinstance(value.get("price"), int | float):
        raise ConfigurationError(f'{origin}: price {key!r} needs a number ("price": 0.0123)')
    if value["price"] < 0:
        raise ConfigurationError(f"{origin}: price {key!r} is negative")
    return Price(
        price=float(value["price"]),
        unit=str(value.get("unit", old.unit if old else "")),
        date=str(value.get("date", "" if old is None else f"override of {old.date}")),
        source=str(value.get("source", origin)),
    )


def load(path: Path | str | None = None) -> Prices:
    """The package's table, with ``path``'s entries over it."""
    base = json.loads(resources.files(__package__).joinpath("prices.json").read_text("utf-8"))
    sources = ["conveyor/cost/prices.json"]
    prices = {k: _price(k, v, None, sources[0]) for k, v in base["prices"].items()}
    instances = [Instance(**i) for i in base["instances"]]
    assumptions = {k: float(v) for k, v in base["assumptions"].items()}
    region, currency = base["region"], base["currency"]
    if path is not None:
        path = Path(path)
        data = _read(path)
        unknown = set(data) - {"region", "currency", "note", "prices", "instances", "assumptions"}
        if unknown:
            raise ConfigurationError(
                f"price file {path}: unknown section(s) {', '.join(sorted(unknown))}; "
                "known: prices, instances, assumptions, region, currency"
            )
        for key, value in (data.get("prices") or {}).items():
            if key not in prices:
                raise ConfigurationError(
                    f"price file {path}: unknown price {key!r}; known: {', '.join(prices)}"
                )
            prices[key] = _price(key, value, prices[key], str(path))
        for name, value in (data.get("assumptions") or {}).items():
            if name not in assumptions or not isinstance(value, int | float):
                raise ConfigurationError(
                    f"price file {path}: assumption {name!r} is unknown or not a number"
                )
            assumptions[name] = float(value)
        if "instances" in data:
            try:
                instances = [Instance(**i) for i in data["instances"]]
            except TypeError as exc:
                raise ConfigurationError(f"price file {path}: bad instance: {exc}") from None
        region, currency = data.get("region", region), data.get("currency", currency)
        sources.append(str(path))
    return Prices(region, currency, prices, instances, assumptions, sources)
