"""Hourly price and carbon intensity per site for any absolute hour: the scenario's day profile,
or a forecast that overrides it.

Hours are absolute: ``hour_of(t)`` is the number of whole hours since the epoch (the scenario's
zone has whole-hour offsets, so absolute hours are local hours too). ``Forecast.hourly`` is the
one function the solver reads future prices and intensities through, so that a benchmark can
plan on a forecast and account with a perturbed actual profile.

A forecast file (TOML, or JSON for a ``.json`` name) names sites of the scenario; every key is
optional and what it leaves out is the scenario's::

    # consecutive hours from this instant (an hour boundary); without it, each list holds
    # exactly 24 values, one per local hour h = [h:00, h+1:00)
    start = 2025-01-15T00:00:00+08:00

    [sites.zhangbei]
    price_cny_per_kwh = [0.29, 0.29, ...]
    carbon_kg_per_kwh = [0.267, 0.267, ...]
"""

from __future__ import annotations

import json
import math
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from scheduler.domain.energy import SiteRates
from scheduler.domain.errors import ValidationError
from scheduler.domain.scenario import HOURS, Scenario

HOUR_S = 3600
FloatArray = npt.NDArray[np.float64]


def hour_of(t: datetime | float) -> int:
    """The absolute hour holding ``t`` (a datetime with a zone, or epoch seconds)."""
    ts = t.timestamp() if isinstance(t, datetime) else t
    return math.floor(ts / HOUR_S)


def hour_start(hour: int) -> datetime:
    """The instant an absolute hour begins (UTC)."""
    return datetime.fromtimestamp(hour * HOUR_S, UTC)


def scenario_zone(scenario: Scenario) -> tzinfo:
    """The scenario's time zone, for its local hour and month."""
    try:
        from zoneinfo import ZoneInfo

        return ZoneInfo(scenario.timezone)
    except Exception:  # no tz database: China has kept UTC+8 without DST since 1991
        if scenario.timezone == "Asia/Shanghai":
            return timezone(timedelta(hours=8))
        return UTC


@lru_cache(maxsize=4096)
def _local(zone: tzinfo, hour: int) -> tuple[int, int]:
    t = hour_start(hour).astimezone(zone)
    return t.hour, t.month


@dataclass(frozen=True)
class SiteProfile:
    """Values that replace a site's: by local hour (``daily``, 24 values) or for consecutive
    absolute hours from ``Forecast.start_hour``. None: the scenario's."""

    price_cny_per_kwh: tuple[float, ...] | None = None
    carbon_kg_per_kwh: tuple[float, ...] | None = None


@dataclass(frozen=True)
class Forecast:
    """Price and carbon per site and absolute hour (see the module docstring). Picklable."""

    scenario: Scenario
    zone: tzinfo
    profiles: Mapping[str, SiteProfile] = field(default_factory=dict)
    # absolute hour of the profiles' first value; None: the profiles are by local hour
    start_hour: int | None = None
    source: str = ""

    @classmethod
    def of(cls, scenario: Scenario) -> Forecast:
        """The scenario's own day profile."""
        return cls(scenario, scenario_zone(scenario))

    def local(self, hour: int) -> tuple[int, int]:
        """Local hour of day and month of an absolute hour."""
        return _local(self.zone, hour)

    def hourly(self, site: str, first_hour: int, count: int) -> tuple[FloatArray, FloatArray]:
        """Price (CNY/kWh) and carbon intensity (kg/kWh) of ``site`` for the ``count`` absolute
        hours from ``first_hour``: the one place future rates are read from."""
        s = self.scenario.site(site)
        prof = self.profiles.get(site, SiteProfile())
        price = np.empty(count)
        carbon = np.empty(count)
        for i in range(count):
            h = first_hour + i
            hod, month = self.local(h)
            price[i] = self._value(prof.price_cny_per_kwh, h, hod, s.price_at(hod, month))
            carbon[i] = self._value(prof.carbon_kg_per_kwh, h, hod, s.carbon_at(hod))
        return price, carbon

    def rates(self, site: str, hour: int) -> SiteRates:
        """A site's rates for one absolute hour."""
        price, carbon = self.hourly(site, hour, 1)
        return SiteRates(site, self.scenario.site(site).pue, float(price[0]), float(carbon[0]))

    def _value(
        self, values: tuple[float, ...] | None, hour: int, hod: int, default: float
    ) -> float:
        if values is None:
            return default
        if self.start_hour is None:
            return values[hod]
        i = hour - self.start_hour
        return values[i] if 0 <= i < len(values) else default


def load_forecast(path: str | Path, scenario: Scenario) -> Forecast:
    """Read and check a forecast file (module docstring); raises ``ValidationError`` naming the
    file and the field."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
        data = json.loads(text) if p.suffix.lower() == ".json" else tomllib.loads(text)
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise ValidationError(str(p), f"cannot read forecast: {e}") from None
    return parse_forecast(data, scenario, str(p))


def parse_forecast(data: Mapping[str, Any], scenario: Scenario, source: str = "") -> Forecast:
    """A forecast from parsed TOML or JSON (``load_forecast``)."""
    pre = f"{source}: " if source else ""

    def fail(where: str, message: str) -> ValidationError:
        return ValidationError(f"{pre}{where}", message)

    if not isinstance(data, Mapping):
        raise fail("", "must be a table")
    for key in data:
        if key not in ("start", "sites"):
            raise fail(str(key), "unknown key (known: start, sites)")
    start_hour = None
    if "start" in data:
        start = data["start"]
        if isinstance(start, str):
            try:
                start = datetime.fromisoformat(start)
            except ValueError:
                raise fail("start", f"not an ISO 8601 instant: {start[:40]!r}") from None
        if not isinstance(start, datetime) or start.tzinfo is None:
            raise fail("start", "must be an instant with a UTC offset")
        if start.timestamp() % HOUR_S:
            raise fail("start", "must be an hour boundary")
        start_hour = hour_of(start)
    sites = data.get("sites", {})
    if not isinstance(sites, Mapping):
        raise fail("sites", "must be a table of sites")
    profiles: dict[str, SiteProfile] = {}
    for name, body in sites.items():
        where = f"sites.{name}"
        if name not in scenario.site_names:
            raise fail(where, f"unknown site (known: {', '.join(scenario.site_names)})")
        if not isinstance(body, Mapping):
            raise fail(where, "must be a table")
        lists: dict[str, tuple[float, ...]] = {}
        for key, values in body.items():
            if key not in ("price_cny_per_kwh", "carbon_kg_per_kwh"):
                raise fail(f"{where}.{key}", "unknown key")
            lists[key] = _values(values, f"{where}.{key}", start_hour is None, fail)
        profiles[name] = SiteProfile(lists.get("price_cny_per_kwh"), lists.get("carbon_kg_per_kwh"))
    zone = scenario_zone(scenario)
    return Forecast(scenario, zone, profiles, start_hour, source)


def _values(values: Any, where: str, daily: bool, fail: Any) -> tuple[float, ...]:
    if not isinstance(values, list) or not values:
        raise fail(where, "must be a list of numbers")
    if daily and len(values) != HOURS:
        raise fail(where, f"must have {HOURS} hourly values without start (got {len(values)})")
    out = []
    for i, v in enumerate(values):
        if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v) or v < 0:
            raise fail(f"{where}[{i}]", f"must be a finite number >= 0 (got {v!r})")
        out.append(float(v))
    return tuple(out)
