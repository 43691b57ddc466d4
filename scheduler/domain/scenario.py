"""Scenarios: sites, node pools, origins, tariffs and carbon profiles, loaded from TOML.

A scenario is static data. The mutable state of the nodes lives in ``cluster.Cluster``.
Loading a broken file raises ``ScenarioError`` naming the file, the key and what is wrong.
"""

from __future__ import annotations

import math
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from importlib import resources as importlib_resources
from pathlib import Path
from typing import Any

from scheduler.domain.errors import ScenarioError
from scheduler.domain.resources import GPU_MILLIS, Resources

HOURS = 24
DEFAULT_SCENARIO = "beijing-hebei"


@dataclass(frozen=True, slots=True)
class RackRange:
    """Nodes ``first``..``last`` (indices in their pool, both included) stand in rack ``name``."""

    name: str
    first: int
    last: int


@dataclass(frozen=True, slots=True)
class Pool:
    """Identical nodes of one site: same shape, GPU model and power model. A node's rack (a
    failure domain beyond the node) is ``rack`` for the whole pool, or the rack of the range
    of ``racks`` it falls in, or with ``rack_size`` one of consecutive racks of that many nodes
    (``<pool>-r00``, ``<pool>-r01``, ...); a node in none stands in no rack (``rack_of`` "")."""

    name: str
    site: str
    count: int
    node: Resources  # capacity of one node; gpu_millis = gpus * 1000
    gpu_model: str = ""
    idle_watts: float = 200.0  # drawn by a node that holds any workload
    max_watts: float = 500.0  # at full CPU allocation, GPUs excluded
    gpu_watts: float = 700.0  # one GPU at full load
    rack: str = ""
    rack_size: int = 0
    racks: tuple[RackRange, ...] = ()

    @property
    def key(self) -> str:
        return f"{self.site}/{self.name}"

    def rack_of(self, index: int) -> str:
        """The rack of the pool's node ``index`` within its site, "" if it stands in none."""
        if self.rack:
            return self.rack
        if self.rack_size:
            return f"{self.name}-r{index // self.rack_size:02d}"
        for r in self.racks:
            if r.first <= index <= r.last:
                return r.name
        return ""

    def with_count(self, count: int) -> Pool:
        """The pool with ``count`` nodes; rack ranges past the last node are cut."""
        racks = tuple(
            replace(r, last=min(r.last, count - 1)) for r in self.racks if r.first < count
        )
        return replace(self, count=count, racks=racks)

    def node_name(self, index: int) -> str:
        return f"{self.site}/{self.name}-{index:04d}"


@dataclass(frozen=True, slots=True)
class CriticalPeak:
    months: tuple[int, ...]
    hours: tuple[int, ...]
    price_cny_per_kwh: float


@dataclass(frozen=True, slots=True)
class Site:
    name: str
    pue: float
    latency_ms: Mapping[str, float]  # origin -> RTT
    price_cny_per_kwh: tuple[float, ...]  # 24 local hours
    carbon_kg_per_kwh: tuple[float, ...]  # 24 local hours
    pools: tuple[Pool, ...]
    latitude: float = 0.0
    longitude: float = 0.0
    critical_peak: CriticalPeak | None = None

    def price_at(self, hour: int, month: int = 1) -> float:
        cp = self.critical_peak
        if cp is not None and month in cp.months and hour in cp.hours:
            return cp.price_cny_per_kwh
        return self.price_cny_per_kwh[hour % HOURS]

    def carbon_at(self, hour: int) -> float:
        return self.carbon_kg_per_kwh[hour % HOURS]

    @property
    def capacity(self) -> Resources:
        total = Resources()
        for pool in self.pools:
            total = total + pool.node.scaled(pool.count)
        return total


@dataclass(frozen=True, slots=True)
class Scenario:
    name: str
    sites: tuple[Site, ...]
    origins: tuple[str, ...]
    carbon_price_cny_per_tonne: float = 100.0
    timezone: str = "Asia/Shanghai"
    description: str = ""
    source: str = field(default="", compare=False)

    def site(self, name: str) -> Site:
        for s in self.sites:
            if s.name == name:
                return s
        raise KeyError(name)

    @property
    def site_names(self) -> tuple[str, ...]:
        return tuple(s.name for s in self.sites)

    @property
    def pools(self) -> tuple[Pool, ...]:
        return tuple(p for s in self.sites for p in s.pools)

    def rtt_ms(self, origin: str, site: str) -> float:
        return self.site(site).latency_ms[origin]

    def scaled(self, factors: Mapping[str, float]) -> Scenario:
        """A copy with the node count of each pool (key ``site/pool``, or ``site`` for all its
        pools) multiplied by its factor, at least one node per pool."""
        sites = []
        for s in self.sites:
            pools = []
            for p in s.pools:
                f = factors.get(p.key, factors.get(s.name, 1.0))
                pools.append(p.with_count(max(1, round(p.count * f))))
            sites.append(replace(s, pools=tuple(pools)))
        return replace(self, sites=tuple(sites))


# --------------------------------------------------------------------------- loading


def load_scenario(name_or_path: str | Path = DEFAULT_SCENARIO) -> Scenario:
    """Load a shipped scenario by name (``beijing-hebei``) or a TOML file by path."""
    text_path = str(name_or_path)
    path = Path(text_path)
    if path.suffix == ".toml" or path.exists():
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as e:
            raise ScenarioError(text_path, "", f"cannot read: {e.strerror}") from None
        return parse_scenario(text, text_path)
    shipped = importlib_resources.files("scheduler") / "scenarios" / f"{text_path}.toml"
    if not shipped.is_file():
        known = ", ".join(shipped_scenarios())
        raise ScenarioError(text_path, "", f"no such scenario file or shipped scenario ({known})")
    return parse_scenario(shipped.read_text(encoding="utf-8"), f"scenarios/{text_path}.toml")


def shipped_scenarios() -> list[str]:
    folder = importlib_resources.files("scheduler") / "scenarios"
    return sorted(p.name[: -len(".toml")] for p in folder.iterdir() if p.name.endswith(".toml"))


class _Reader:
    """Reads typed values out of parsed TOML and reports the full key path on error."""

    def __init__(self, path: str) -> None:
        self.path = path

    def fail(self, key: str, message: str) -> ScenarioError:
        return ScenarioError(self.path, key, message)

    def table(self, data: Mapping[str, Any], key: str, prefix: str) -> Mapping[str, Any]:
        value = data.get(key)
        if not isinstance(value, Mapping):
            raise self.fail(
                f"{prefix}{key}", "missing table" if value is None else "must be a table"
            )
        return value

    def number(
        self,
        data: Mapping[str, Any],
        key: str,
        prefix: str,
        *,
        low: float | None = None,
        high: float | None = None,
        default: float | None = None,
    ) -> float:
        value = data.get(key, default)
        full = f"{prefix}{key}"
        if value is None:
            raise self.fail(full, "missing value")
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.fail(full, f"must be a number (got {value!r})")
        if not math.isfinite(value):
            raise self.fail(full, "must be finite")
        if low is not None and value < low:
            raise self.fail(full, f"must be >= {low} (got {value})")
        if high is not None and value > high:
            raise self.fail(full, f"must be <= {high} (got {value})")
        return float(value)

    def integer(
        self,
        data: Mapping[str, Any],
        key: str,
        prefix: str,
        *,
        low: int = 0,
        default: int | None = None,
    ) -> int:
        value = data.get(key, default)
        full = f"{prefix}{key}"
        if value is None:
            raise self.fail(full, "missing value")
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.fail(full, f"must be an integer (got {value!r})")
        if value < low:
            raise self.fail(full, f"must be >= {low} (got {value})")
        return value

    def string(
        self, data: Mapping[str, Any], key: str, prefix: str, default: str | None = None
    ) -> str:
        value = data.get(key, default)
        if not isinstance(value, str):
            raise self.fail(
                f"{prefix}{key}", "missing value" if value is None else "must be a string"
            )
        return value

    def unknown(self, data: Mapping[str, Any], allowed: set[str], prefix: str) -> None:
        for key in data:
            if key not in allowed:
                raise self.fail(
                    f"{prefix}{key}", f"unknown key (expected one of: {', '.join(sorted(allowed))})"
                )

    def hours(self, data: Mapping[str, Any], key: str, prefix: str) -> tuple[float, ...]:
        """24 hourly values, either a list of 24 numbers or a table of named periods
        ``{name = {value = x, hours = [...]}}`` that cover every hour exactly once."""
        value = data.get(key)
        full = f"{prefix}{key}"
        if isinstance(value, list):
            if len(value) != HOURS:
                raise self.fail(full, f"must have {HOURS} hourly values (got {len(value)})")
            out = []
            for i, v in enumerate(value):
                if (
                    isinstance(v, bool)
                    or not isinstance(v, int | float)
                    or not math.isfinite(v)
                    or v < 0
                ):
                    raise self.fail(f"{full}[{i}]", f"must be a finite number >= 0 (got {v!r})")
                out.append(float(v))
            return tuple(out)
        if isinstance(value, Mapping):
            slots: list[float | None] = [None] * HOURS
            for period, spec in value.items():
                pkey = f"{full}.{period}"
                if not isinstance(spec, Mapping):
                    raise self.fail(pkey, "must be a table with value and hours")
                self.unknown(spec, {"value", "hours"}, pkey + ".")
                v = self.number(spec, "value", pkey + ".", low=0.0)
                hours = spec.get("hours")
                if not isinstance(hours, list) or not hours:
                    raise self.fail(f"{pkey}.hours", "must be a non-empty list of hours 0..23")
                for h in hours:
                    if isinstance(h, bool) or not isinstance(h, int) or not 0 <= h < HOURS:
                        raise self.fail(
                            f"{pkey}.hours", f"hour must be an integer 0..23 (got {h!r})"
                        )
                    if slots[h] is not None:
                        raise self.fail(f"{pkey}.hours", f"hour {h} is already in another period")
                    slots[h] = v
            missing = [h for h, v in enumerate(slots) if v is None]
            if missing:
                raise self.fail(full, f"hours not covered by any period: {missing}")
            return tuple(float(v) for v in slots if v is not None)
        raise self.fail(
            full,
            "missing value"
            if value is None
            else "must be a list of 24 numbers or a table of periods",
        )


_TOP_KEYS = {"name", "description", "timezone", "carbon_price_cny_per_tonne", "origins", "sites"}
_SITE_KEYS = {
    "pue",
    "latitude",
    "longitude",
    "latency_ms",
    "price_cny_per_kwh",
    "carbon_kg_per_kwh",
    "critical_peak",
    "pools",
}
_POOL_KEYS = {
    "name",
    "count",
    "cpu_millis",
    "memory_mib",
    "gpus",
    "gpu_model",
    "idle_watts",
    "max_watts",
    "gpu_watts",
    "rack",
    "rack_size",
    "racks",
}


def parse_scenario(text: str, path: str = "<scenario>") -> Scenario:
    """Parse scenario TOML text; ``path`` is used in error messages."""
    r = _Reader(path)
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ScenarioError(path, "", f"invalid TOML: {e}") from None
    r.unknown(data, _TOP_KEYS, "")
    name = r.string(data, "name", "")
    origins = _origins(r, data)
    sites_data = r.table(data, "sites", "")
    if not sites_data:
        raise r.fail("sites", "must define at least one site")
    sites = tuple(_site(r, site_name, sdata, origins) for site_name, sdata in sites_data.items())
    return Scenario(
        name=name,
        sites=sites,
        origins=origins,
        carbon_price_cny_per_tonne=r.number(
            data, "carbon_price_cny_per_tonne", "", low=0.0, default=100.0
        ),
        timezone=r.string(data, "timezone", "", default="Asia/Shanghai"),
        description=r.string(data, "description", "", default=""),
        source=path,
    )


def _origins(r: _Reader, data: Mapping[str, Any]) -> tuple[str, ...]:
    origins_data = data.get("origins")
    if (
        not isinstance(origins_data, list)
        or not origins_data
        or not all(isinstance(o, str) and o for o in origins_data)
    ):
        raise r.fail("origins", "must be a non-empty list of origin names")
    origins = tuple(origins_data)
    if len(set(origins)) != len(origins):
        raise r.fail("origins", "names must be unique")
    return origins


def _site(r: _Reader, site_name: str, sdata: object, origins: tuple[str, ...]) -> Site:
    prefix = f"sites.{site_name}."
    if not isinstance(sdata, Mapping):
        raise r.fail(f"sites.{site_name}", "must be a table")
    if "/" in site_name or not site_name:
        raise r.fail(f"sites.{site_name}", "site names must be non-empty and contain no '/'")
    r.unknown(sdata, _SITE_KEYS, prefix)
    lat_data = r.table(sdata, "latency_ms", prefix)
    latency: dict[str, float] = {}
    for origin in origins:
        if origin not in lat_data:
            raise r.fail(f"{prefix}latency_ms.{origin}", "missing RTT for a known origin")
        latency[origin] = r.number(lat_data, origin, f"{prefix}latency_ms.", low=0.0)
    for origin in lat_data:
        if origin not in origins:
            raise r.fail(f"{prefix}latency_ms.{origin}", "unknown origin (add it to origins)")
    pools_data = sdata.get("pools")
    if not isinstance(pools_data, list) or not pools_data:
        raise r.fail(f"{prefix}pools", "must be a non-empty array of tables ([[sites.X.pools]])")
    pools: list[Pool] = []
    for i, pdata in enumerate(pools_data):
        pool = _pool(r, site_name, i, pdata)
        if any(p.name == pool.name for p in pools):
            raise r.fail(f"{prefix}pools[{i}].name", f"duplicate pool name {pool.name!r}")
        pools.append(pool)
    return Site(
        name=site_name,
        pue=r.number(sdata, "pue", prefix, low=1.0, high=5.0),
        latency_ms=latency,
        price_cny_per_kwh=r.hours(sdata, "price_cny_per_kwh", prefix),
        carbon_kg_per_kwh=r.hours(sdata, "carbon_kg_per_kwh", prefix),
        pools=tuple(pools),
        latitude=r.number(sdata, "latitude", prefix, low=-90, high=90, default=0.0),
        longitude=r.number(sdata, "longitude", prefix, low=-180, high=180, default=0.0),
        critical_peak=_critical_peak(r, sdata, prefix) if "critical_peak" in sdata else None,
    )


def _critical_peak(r: _Reader, sdata: Mapping[str, Any], prefix: str) -> CriticalPeak:
    cp = r.table(sdata, "critical_peak", prefix)
    cprefix = f"{prefix}critical_peak."
    r.unknown(cp, {"months", "hours", "value"}, cprefix)
    months = cp.get("months", [])
    hours = cp.get("hours", [])
    if not isinstance(months, list) or not all(isinstance(m, int) and 1 <= m <= 12 for m in months):
        raise r.fail(f"{cprefix}months", "must be a list of months 1..12")
    if not isinstance(hours, list) or not all(isinstance(h, int) and 0 <= h < HOURS for h in hours):
        raise r.fail(f"{cprefix}hours", "must be a list of hours 0..23")
    return CriticalPeak(tuple(months), tuple(hours), r.number(cp, "value", cprefix, low=0.0))


def _pool(r: _Reader, site_name: str, i: int, pdata: object) -> Pool:
    pprefix = f"sites.{site_name}.pools[{i}]."
    if not isinstance(pdata, Mapping):
        raise r.fail(f"sites.{site_name}.pools[{i}]", "must be a table")
    r.unknown(pdata, _POOL_KEYS, pprefix)
    gpus = r.integer(pdata, "gpus", pprefix, default=0)
    pool = Pool(
        name=r.string(pdata, "name", pprefix),
        site=site_name,
        count=r.integer(pdata, "count", pprefix, low=1),
        node=Resources(
            cpu_millis=r.integer(pdata, "cpu_millis", pprefix, low=1),
            memory_mib=r.integer(pdata, "memory_mib", pprefix, low=1),
            gpus=gpus,
            gpu_millis=gpus * GPU_MILLIS,
        ),
        gpu_model=r.string(pdata, "gpu_model", pprefix, default=""),
        idle_watts=r.number(pdata, "idle_watts", pprefix, low=0.0),
        max_watts=r.number(pdata, "max_watts", pprefix, low=0.0),
        gpu_watts=r.number(pdata, "gpu_watts", pprefix, low=0.0, default=0.0),
    )
    pool = _racks(r, pdata, pprefix, pool)
    if pool.max_watts < pool.idle_watts:
        raise r.fail(f"{pprefix}max_watts", "must be >= idle_watts")
    if gpus and not pool.gpu_model:
        raise r.fail(f"{pprefix}gpu_model", "required when gpus > 0")
    return pool


def _rack_name(r: _Reader, value: object, key: str) -> str:
    if not isinstance(value, str) or not value or "/" in value:
        raise r.fail(key, f"a rack name must be a non-empty string without '/' (got {value!r})")
    return value


def _racks(r: _Reader, pdata: Mapping[str, Any], pprefix: str, pool: Pool) -> Pool:
    """The pool's racks: ``rack`` (one for the pool), ``rack_size`` (consecutive racks of that
    many nodes) or ``racks`` (node ranges ``{ name, first, last }``), at most one of them."""
    given = [k for k in ("rack", "rack_size", "racks") if k in pdata]
    if len(given) > 1:
        raise r.fail(
            f"{pprefix}{given[1]}", f"give one of rack, rack_size, racks (also {given[0]})"
        )
    if "rack" in pdata:
        return replace(pool, rack=_rack_name(r, pdata["rack"], f"{pprefix}rack"))
    if "rack_size" in pdata:
        return replace(pool, rack_size=r.integer(pdata, "rack_size", pprefix, low=1))
    if "racks" not in pdata:
        return pool
    ranges = pdata["racks"]
    if not isinstance(ranges, list) or not ranges:
        raise r.fail(f"{pprefix}racks", "must be a non-empty array of { name, first, last }")
    out: list[RackRange] = []
    for i, item in enumerate(ranges):
        key = f"{pprefix}racks[{i}]"
        if not isinstance(item, Mapping):
            raise r.fail(key, "must be a table { name, first, last }")
        r.unknown(item, {"name", "first", "last"}, key + ".")
        rng = RackRange(
            _rack_name(r, item.get("name"), f"{key}.name"),
            r.integer(item, "first", key + "."),
            r.integer(item, "last", key + "."),
        )
        if rng.last < rng.first:
            raise r.fail(f"{key}.last", f"must be >= first ({rng.first}) (got {rng.last})")
        if rng.last >= pool.count:
            raise r.fail(f"{key}.last", f"the pool has nodes 0..{pool.count - 1} (got {rng.last})")
        for j, other in enumerate(out):
            if rng.first <= other.last and other.first <= rng.last:
                raise r.fail(
                    key, f"nodes {rng.first}..{rng.last} overlap racks[{j}] ({other.name})"
                )
        out.append(rng)
    return replace(pool, racks=tuple(out))
