from __future__ import annotations

import pytest

from scheduler.domain import Cluster, ScenarioError, load_scenario, parse_scenario
from tests.conftest import TINY


def test_default_scenario_has_the_node_counts_of_the_design(beijing_hebei):
    counts = {p.key: p.count for p in beijing_hebei.pools}
    assert counts == {
        "etown/cpu": 1000,
        "etown/gpu-a800": 16,
        "zhangbei/cpu": 5000,
        "zhangbei/gpu-h800": 96,
        "zhangbei/gpu-a800": 32,
    }
    assert len(Cluster(beijing_hebei)) == 6144


@pytest.mark.parametrize(
    ("site", "hour", "month", "price"),
    [
        ("etown", 3, 1, 0.4358),  # valley
        ("etown", 8, 1, 0.6813),  # flat
        ("etown", 11, 1, 0.9268),  # peak
        ("etown", 11, 7, 1.0578),  # critical peak in July
        ("etown", 16, 8, 1.0578),  # critical peak replaces flat at 16h in August
        ("zhangbei", 12, 1, 0.2921),  # solar midday valley
        ("zhangbei", 18, 1, 0.8502),  # peak
    ],
)
def test_default_tariffs_follow_the_scenario_document(beijing_hebei, site, hour, month, price):
    assert beijing_hebei.site(site).price_at(hour, month) == pytest.approx(price)


def test_zhangbei_is_greener_than_etown_every_hour(beijing_hebei):
    e, z = beijing_hebei.site("etown"), beijing_hebei.site("zhangbei")
    assert all(z.carbon_at(h) < e.carbon_at(h) for h in range(24))


@pytest.mark.parametrize(
    ("edit", "key", "message"),
    [
        (("pue = 1.5", "pue = 'high'"), "sites.near.pue", "must be a number"),
        (("pue = 1.5", "pue = 1.5\npeu = 1.2"), "sites.near.peu", "unknown key"),
        (("count = 2", "count = -2"), "sites.near.pools[0].count", "must be >= 1"),
        (
            ("latency_ms = { city = 1.0, far = 6.0 }", "latency_ms = { city = 1.0 }"),
            "sites.near.latency_ms.far",
            "missing RTT",
        ),
        (
            ("value = 0.6, hours = [\n    0, 1,", "value = 0.6, hours = [\n    1,"),
            "sites.near.carbon_kg_per_kwh",
            "hours not covered by any period: [0]",
        ),
    ],
)
def test_broken_scenario_fails_naming_file_and_key(edit, key, message):
    old, new = edit
    assert old in TINY
    with pytest.raises(ScenarioError) as err:
        parse_scenario(TINY.replace(old, new, 1), "broken.toml")
    assert err.value.path == "broken.toml"
    assert err.value.key == key
    assert message in str(err.value)


def test_unknown_scenario_name_lists_the_shipped_ones():
    with pytest.raises(ScenarioError, match="beijing-hebei"):
        load_scenario("atlantis")


def test_scenario_file_is_loaded_by_path(tmp_path):
    path = tmp_path / "tiny.toml"
    path.write_text(TINY)
    assert load_scenario(str(path)).site_names == ("near", "green")
