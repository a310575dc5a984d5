"""An experiment's report: every child's test figures beside the reference's, with paired intervals."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from downbeat.models.evaluation import Difference


@dataclass(frozen=True)
class ChildResult:
    """One trained child of an experiment, scored on the test tables."""

    name: str
    model: str
    run_id: str
    settings: dict[str, Any]  # the grid's values for this child (what the plots put on the x axis)
    metrics: dict[str, float]  # point values
    differences: dict[str, Difference]  # this child minus `versus` (empty for the reference)
    best_epoch: int  # 0-based epoch of the best validation figure (the weights it keeps); first seed's
    epochs_run: int
    logged: dict[str, float] = field(default_factory=dict)  # figures the child's run logged itself
    seeds: int = 1  # training seeds; `metrics` are their means
    spread: dict[str, float] = field(default_factory=dict)  # each figure's std across seeds
    diff_spread: dict[str, float] = field(default_factory=dict)  # std across seeds of the difference
    versus: str = ""  # the child the differences are taken from (empty for the reference itself)
    best_epochs: tuple[int, ...] = ()  # each seed's best_epoch, in seed order (empty: best_epoch alone)

    def epochs_to_best(self) -> str:
        """1-based, one per seed: '39' or '39 / 6 / 6'."""
        return " / ".join(str(e + 1) for e in (self.best_epochs or (self.best_epoch,)))


def _number(value: float) -> str:
    return "n/a" if value is None or not math.isfinite(value) else f"{value:.4f}"


def cell(result: ChildResult, metric: str) -> str:
    """'value' for the reference; 'value (diff [low, high])' for the others, starred when the interval
    leaves out 0. Under several seeds the value is their mean, followed by ± their std, and a
    difference whose std across seeds exceeds the difference itself is marked '(seed spread sd)'."""
    value = result.metrics.get(metric, float("nan"))
    shown = _number(value)
    sd = result.spread.get(metric)
    if sd is not None and math.isfinite(sd):
        shown += f" ±{sd:.4f}"
    d = result.differences.get(metric)
    if d is None:
        return shown
    if not all(math.isfinite(x) for x in (d.diff, d.diff_low, d.diff_high)):
        return f"{shown} (n/a)"
    star = "*" if d.diff_low > 0 or d.diff_high < 0 else ""
    spread = result.diff_spread.get(metric, float("nan"))
    noisy = f" (seed spread {spread:.4f})" if math.isfinite(spread) and spread > abs(d.diff) else ""
    return f"{shown} ({d.diff:+.4f} [{d.diff_low:+.4f}, {d.diff_high:+.4f}]{star}{noisy})"


def render_report(
    name: str,
    description: str,
    reference: str,
    metrics: Sequence[str],
    children: Sequence[ChildResult],
    facts: Sequence[str],
) -> str:
    """The markdown report: what was run, then the paper-style table."""
    lines = [f"# Experiment {name}", ""]
    if description:
        lines += [description.strip(), ""]
    lines += [f"- {fact}" for fact in facts]
    lines += [
        f"- Each cell: the child's value on the test tables, then (child - {reference}, or the child "
        "named after 'vs' in its row) with its 95% "
        "paired bootstrap interval over users; * where the interval leaves out 0. Under several "
        "training seeds: the mean over seeds ± its standard deviation, the interval of the "
        "seed-averaged models, and '(seed spread s)' where the difference's standard deviation "
        "across seeds exceeds the difference.",
        "- Epochs to best: the epoch whose validation figure the run kept (1-based, one per seed; each "
        "model selects on its own task's figure, train.select_on); the model was chosen on validation "
        "data only. Epochs run: the most of any seed. Figures the runs logged themselves (after the "
        "metrics): the mean over seeds.",
        "",
    ]
    logged = [name for name in children[0].logged] if children else []
    header = ["child", "model", "epochs to best", "epochs run", *metrics, *logged]
    lines.append("| " + " | ".join(header) + " |")
    lines.append("|" + "---|" * len(header))
    for child in children:
        label = f"{child.name} (reference)" if child.name == reference else child.name
        if child.versus and child.versus != reference:
            label += f" (vs {child.versus})"
        row = [label, child.model, child.epochs_to_best(), str(child.epochs_run)]
        row += [cell(child, m) for m in metrics] + [
            _number(child.logged.get(m, float("nan"))) for m in logged
        ]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines) + "\n"


def report_json(
    reference: str, metrics: Sequence[str], children: Sequence[ChildResult], experiment: str = ""
) -> dict[str, Any]:
    """The table as JSON: the experiment's name, and per child its run, epochs, and each metric with
    its difference."""

    def finite(x: float) -> float | None:
        return x if x is not None and math.isfinite(x) else None

    out: dict[str, Any] = {"experiment": experiment, "reference": reference, "children": {}}
    for child in children:
        entry: dict[str, Any] = {
            "model": child.model,
            "run_id": child.run_id,
            "settings": child.settings,
            "best_epoch": child.best_epoch,
            "best_epochs": list(child.best_epochs or (child.best_epoch,)),
            "epochs_run": child.epochs_run,
            "seeds": child.seeds,
            "versus": child.versus or None,
            **{name: {"value": finite(value)} for name, value in child.logged.items()},
        }
        for metric in metrics:
            figures: dict[str, float | None] = {"value": finite(child.metrics.get(metric, float("nan")))}
            if metric in child.spread:
                figures["seed_std"] = finite(child.spread[metric])
            if metric in child.diff_spread:
                figures["diff_seed_std"] = finite(child.diff_spread[metric])
            d = child.differences.get(metric)
            if d is not None:
                figures |= {
                    "diff": finite(d.diff),
                    "diff_low": finite(d.diff_low),
                    "diff_high": finite(d.diff_high),
                }
            entry[metric] = figures
        out["children"][child.name] = entry
    return out


def plot_against_settings(
    children: Sequence[ChildResult], reference: str, metrics: Sequence[str], folder: Path
) -> list[Path]:
    """Each metric against each numeric setting that at least two children set to different values:
    `<metric>_vs_<setting>.png` in `folder`, bars the value of the child each was compared with (the
    reference, or its `versus`) plus the paired interval."""
    from downbeat.models.plots import plot_metric_against

    numeric = {
        key
        for child in children
        for key, value in child.settings.items()
        if isinstance(value, (int, float)) and not isinstance(value, bool)
    }
    metrics_of = {c.name: c.metrics for c in children}
    written = []
    for key in sorted(numeric):
        having = [c for c in children if key in c.settings]
        if len(having) < 2 or len({repr(c.settings[key]) for c in having}) < 2:
            continue
        for metric in metrics:
            points = []
            for child in having:
                value = child.metrics.get(metric, float("nan"))
                d = child.differences.get(metric)
                base = metrics_of[child.versus or reference]  # what the difference was taken from
                low, high = (
                    (value, value) if d is None else (base[metric] + d.diff_low, base[metric] + d.diff_high)
                )
                points.append((float(child.settings[key]), value, low, high))
            name = f"{metric.replace('@', '_at_')}_vs_{key.rsplit('.', 1)[-1]}.png"
            written.append(plot_metric_against(key, metric, points, folder / name))
    return written
