"""Figures logged with each run (matplotlib, no display)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

TIER_LABELS = {
    1: "same-day down, same station",
    2: "same-day skip, same station",
    3: "later down",
    4: "later skip",
    5: "random",
}


def tier_shares_by_position(where: np.ndarray, tiers: np.ndarray, bins: int = 20) -> np.ndarray:
    """(bins, 5): share of each cascade tier (1..5) among target positions, per position bin.

    where: each target position's bin (0 = a row's oldest plays, bins - 1 = its most recent; the
    UMAP'24 Figure 1 view); tiers: its tier. Tiers outside 1..5 are left out.
    """
    kept = (tiers >= 1) & (tiers <= 5)
    counts = np.zeros((bins, 5))
    np.add.at(counts, (where[kept], tiers[kept] - 1), 1)
    totals = counts.sum(axis=1, keepdims=True)
    return np.divide(counts, totals, out=np.zeros_like(counts), where=totals > 0)


def plot_tier_shares(shares: np.ndarray, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    x = (np.arange(len(shares)) + 0.5) / len(shares)
    ax.stackplot(x, shares.T, labels=[TIER_LABELS[t] for t in range(1, 6)])
    ax.set_xlabel("relative position in the training sequence (0 = oldest)")
    ax.set_ylabel("share of target positions")
    ax.set_title("Hard-negative tier by position (gold/sequences, train rows)")
    ax.set_ylim(0, 1)
    ax.legend(loc="lower left", fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def plot_learning_curves(
    history: Sequence[dict[str, float]], path: Path, selected_on: str = "paired_accuracy"
) -> Path:
    """Train loss and the validation figure the run selected on, per epoch."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [int(h["epoch"]) + 1 for h in history]
    fig, left = plt.subplots(figsize=(7, 4))
    left.plot(epochs, [h["train_loss"] for h in history], "o-", color="tab:blue", label="train loss")
    left.set_xlabel("epoch")
    left.set_ylabel("train loss", color="tab:blue")
    right = left.twinx()
    values = [h.get(f"val_{selected_on}", float("nan")) for h in history]
    right.plot(epochs, values, "s-", color="tab:red", label="validation")
    right.set_ylabel(f"validation {selected_on}", color="tab:red")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def plot_metric_against(
    x_label: str, metric: str, points: Sequence[tuple[float, float, float, float]], path: Path
) -> Path:
    """A metric against one setting of an experiment's grid: (x, value, low, high) per child, the
    bars the paired 95% interval around the value (the reference's value plus the interval of the
    difference, so the reference's own bar has no width)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ordered = sorted(points)
    x = np.array([p[0] for p in ordered])
    value = np.array([p[1] for p in ordered])
    low = np.array([p[2] for p in ordered])
    high = np.array([p[3] for p in ordered])
    fig, ax = plt.subplots(figsize=(6, 4))
    # a percentile interval need not hold the point estimate (few resamples, skewed users)
    below, above = np.clip(value - low, 0, None), np.clip(high - value, 0, None)
    ax.errorbar(x, value, yerr=[below, above], fmt="o-", capsize=4)
    ax.set_xlabel(x_label)
    ax.set_ylabel(metric)
    ax.set_title(f"{metric} against {x_label} (test tables; paired 95% intervals)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def plot_validation_curves(
    curves: Mapping[str, Sequence[tuple[int, float]]], path: Path, figure: str = "paired accuracy"
) -> Path:
    """A validation figure per epoch, one line per experiment child."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    for name, points in curves.items():
        ordered = sorted(points)
        ax.plot([e + 1 for e, _ in ordered], [v for _, v in ordered], "o-", label=name)
    ax.set_xlabel("epoch")
    ax.set_ylabel(f"validation {figure}")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
