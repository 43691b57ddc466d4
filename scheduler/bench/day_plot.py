"""The figure of ``valley bench day``: power, cost and carbon per site over the hours, stacked
by kind of work (matplotlib, imported when drawn)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from scheduler.bench import report
from scheduler.bench.day_account import KINDS


def plot(rows: Sequence[Mapping[str, Any]], hours: int, path: str) -> None:
    """Per policy (rows) and site: facility power (kW), energy cost (CNY/h) and carbon (kg/h)
    over the hours, stacked by kind of work; the end of the arrivals dashed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sites = list(rows[0]["hourly"]) if rows else []
    metrics = (
        ("power_kw", "power, kW"),
        ("energy_cny", "cost, CNY/h"),
        ("carbon_kg", "carbon, kg/h"),
    )
    ncols = max(1, len(sites) * len(metrics))
    fig, axes = plt.subplots(
        len(rows), ncols, figsize=(3.2 * ncols, 2.4 * len(rows)), squeeze=False, sharex=True
    )
    cmap = plt.get_cmap("tab10")
    colors = [cmap(i) for i in range(len(KINDS))]
    for ri, row in enumerate(rows):
        for si, site in enumerate(sites):
            for mi, (key, label) in enumerate(metrics):
                ax = axes[ri][si * len(metrics) + mi]
                series = row["hourly"][site][key]
                n = max((len(v) for v in series.values()), default=0)
                xs = list(range(n))
                ax.stackplot(
                    xs,
                    *[series[k] + [0.0] * (n - len(series[k])) for k in KINDS],
                    labels=KINDS,
                    colors=colors,
                    step="post",
                )
                ax.axvline(hours, color="black", linestyle="dashed", linewidth=0.8)
                ax.set_title(f"{row['policy']}: {site} {label}", fontsize=8)
                ax.tick_params(labelsize=7)
                if ri == len(rows) - 1:
                    ax.set_xlabel("hour of the run", fontsize=8)
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(
        handles,
        labels,
        loc="lower center",
        ncol=len(KINDS),
        fontsize=8,
        bbox_to_anchor=(0.5, -0.03),
    )
    fig.suptitle("day: power, cost and carbon per site, by kind of work", y=1.01)
    fig.tight_layout()
    report.save_plot(fig, path)
    plt.close(fig)
