"""An experiment's runs as scored records that merge across processes and tracking stores.

Each finished run of an experiment, scored on the test tables, is a `ScoredRun`: its seed, the
figures it logged itself (best_epoch, epochs_run, the spec's run_metrics) and its per-user test
terms, from which every figure, the seed spread and the paired interval of the seed-averaged models
are computed again exactly (`child_results`). An experiment's runs.json carries these records
(`runs`, under `users`): a finished one's, beside report.json, and that of a process that stops
while other processes' runs are still unfinished. Records of one experiment (the same design
digest: the same children, seeds, settings and table versions, wherever the runs are kept) from
separate stores merge into the report one store would have written (`merge_runs`): runs trained on
other machines, or in sittings that do not share a store, give one report.

Plain numpy and dicts: never imports pyspark or MLflow.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from downbeat.models.contract import Tables
from downbeat.models.evaluation import UserTerms, compare, mean_terms
from downbeat.models.report import ChildResult, render_report, report_json

# the figures a run logs itself that its report shows (beside the spec's run_metrics)
RUN_FIGURES = ("best_epoch", "epochs_run")
# what runs of one experiment share, so that they merge (a runs record holds each)
MERGE_KEYS = (
    *("experiment", "design", "build_settings", "scoring", "users"),
    *("plan", "plan_children", "reference", "metrics", "run_metrics"),
)


@dataclass(frozen=True)
class ChildPlan:
    """What a report needs of a spec's child."""

    name: str
    model: str
    settings: dict[str, Any]  # the grid's values (the plots' x axis)
    versus: str = ""  # the child it is compared with (empty: the reference)


@dataclass(frozen=True)
class ScoredRun:
    """One finished run, scored on the test tables."""

    name: str  # the planned run's name ('gsasrec seed=8')
    child: str
    seed_index: int  # its child's first seed is 0, the next 1: children pair seed by seed on this
    seed: int  # its train.seed
    run_id: str
    logged: dict[str, float]  # figures the run logged itself (RUN_FIGURES and the spec's run_metrics)
    terms: UserTerms  # per-user sums and counts of every test figure


def seed_spread(values: Sequence[Mapping[str, float]]) -> dict[str, float]:
    """Each figure's standard deviation across seeds (n - 1 in the denominator; {} under one seed)."""
    if len(values) < 2:
        return {}
    return {k: float(np.std([v[k] for v in values], ddof=1)) for k in values[0]}


def _mean_logged(values: list[float | None]) -> float:
    """The mean over seeds of a figure the runs logged themselves (NaN where none logged it)."""
    present = [v for v in values if v is not None and math.isfinite(v)]
    return sum(present) / len(present) if present else float("nan")


def child_results(
    children: Sequence[ChildPlan],
    reference: str,
    run_metrics: Sequence[str],
    scored: Sequence[ScoredRun],
    bootstrap: int,
    seed: int,
) -> list[ChildResult]:
    """One ChildResult per child: mean figures over its seeds, the paired difference from the child
    it is compared with (the seed-averaged models, `bootstrap` resamples of users under `seed`), and
    the spreads across seeds. Runs pair by seed; a child whose seeds differ from those of the child
    it is compared with is a ValueError."""
    own = {
        c.name: sorted((s for s in scored if s.child == c.name), key=lambda s: s.seed_index) for c in children
    }
    results = []
    for child in children:
        runs = own[child.name]
        if not runs:
            raise ValueError(f"child '{child.name}' has no scored run")
        points = [r.terms.point() for r in runs]
        mine = mean_terms([r.terms for r in runs])  # the seed-averaged model
        versus = child.versus or reference
        differences, diff_spread = {}, {}
        if child.name != versus:
            theirs = own[versus]
            if [r.seed_index for r in runs] != [r.seed_index for r in theirs]:
                raise ValueError(
                    f"child '{child.name}' has runs of seeds {[r.seed for r in runs]}, but '{versus}', "
                    f"which it is compared with, of {[r.seed for r in theirs]}: they pair seed by seed"
                )
            differences = compare(mine, mean_terms([r.terms for r in theirs]), samples=bootstrap, seed=seed)
            base_points = [t.terms.point() for t in theirs]
            diff_spread = seed_spread(
                [{k: a[k] - b[k] for k in a} for a, b in zip(points, base_points, strict=True)]
            )
        logged = [r.logged for r in runs]
        results.append(
            ChildResult(
                name=child.name,
                model=child.model,
                run_id=runs[0].run_id,
                settings=child.settings,
                metrics=mine.point(),
                differences=differences,
                best_epoch=int(logged[0].get("best_epoch", 0)),
                logged={m: _mean_logged([e.get(m) for e in logged]) for m in run_metrics},
                epochs_run=int(max(e.get("epochs_run", 0) for e in logged)),
                seeds=len(runs),
                spread=seed_spread(points),
                diff_spread=diff_spread,
                versus="" if child.name == versus else versus,
                best_epochs=tuple(int(e.get("best_epoch", 0)) for e in logged),
            )
        )
    return results


def _numbers(values: np.ndarray) -> list[float] | list[int]:
    """A JSON list that reads back as the same float64 values (whole numbers written as integers)."""
    if np.all(np.isfinite(values)) and np.array_equal(values, np.round(values)):
        return [int(v) for v in values]
    return [float(v) for v in values]


def runs_record(
    plan: Sequence[str], children: Sequence[ChildPlan], scored: Sequence[ScoredRun]
) -> dict[str, Any]:
    """The scored runs as runs.json holds them: the plan (every run's name), each
    child's plan, the users once, and per run its child, seed, run id, logged figures and terms."""
    users = scored[0].terms.users if scored else np.array([], dtype=object)
    for run in scored:
        if not np.array_equal(run.terms.users, users):
            raise ValueError("the runs cover different users: score them on the same tables")
    return {
        "plan": list(plan),
        "plan_children": [
            {"name": c.name, "model": c.model, "settings": c.settings, "versus": c.versus} for c in children
        ],
        "users": [u.item() if isinstance(u, np.generic) else u for u in users],
        "runs": {
            run.name: {
                "child": run.child,
                "seed_index": run.seed_index,
                "seed": run.seed,
                "run_id": run.run_id,
                "logged": {k: v for k, v in run.logged.items() if math.isfinite(v)},
                "sums": {k: _numbers(v) for k, v in sorted(run.terms.sums.items())},
                "counts": {k: _numbers(v) for k, v in sorted(run.terms.counts.items())},
            }
            for run in scored
        },
    }


def scored_runs(record: Mapping[str, Any]) -> list[ScoredRun]:
    """The ScoredRuns of a runs_record (runs.json, or `experiment --json` output, parsed)."""
    users = np.array(record["users"], dtype=object)
    return [
        ScoredRun(
            name=name,
            child=str(run["child"]),
            seed_index=int(run["seed_index"]),
            seed=int(run["seed"]),
            run_id=str(run["run_id"]),
            logged={k: float(v) for k, v in run["logged"].items()},
            terms=UserTerms(
                users,
                {k: np.asarray(v, dtype=np.float64) for k, v in run["sums"].items()},
                {k: np.asarray(v, dtype=np.float64) for k, v in run["counts"].items()},
            ),
        )
        for name, run in record["runs"].items()
    ]


def merge_runs(reports: Sequence[tuple[str, Mapping[str, Any]]]) -> tuple[list[ScoredRun], Mapping[str, Any]]:
    """Every run of one experiment from several (source, report) pairs: runs.json
    files of the same design digest. A run found twice must be the same MLflow run; every planned run
    must be found. Returns the runs in plan order and the first report (the plan's description);
    a mismatch is a ValueError naming the sources."""
    for source, report in reports:
        if not isinstance(report.get("runs"), dict):
            raise ValueError(
                f"{source} holds no scored runs (give an experiment's runs.json, or a report written "
                "since reports carry them)"
            )
        lacking = [k for k in MERGE_KEYS if k not in report]
        if lacking:
            raise ValueError(f"{source} is not a runs record: it has no '{lacking[0]}'")
    (first_source, first), *others = reports
    for source, report in others:
        for key in MERGE_KEYS:
            if report.get(key) != first.get(key):
                raise ValueError(
                    f"{source} and {first_source} are not runs of one experiment: their '{key}' differ "
                    "(the same spec, seeds and configuration on the same table versions merge)"
                )
    found: dict[str, tuple[str, ScoredRun]] = {}
    for source, report in reports:
        for run in scored_runs(report):
            if run.name in found and found[run.name][1].run_id != run.run_id:
                raise ValueError(
                    f"run '{run.name}' was trained twice: run {run.run_id} in {source} and run "
                    f"{found[run.name][1].run_id} in {found[run.name][0]}; keep one of the two"
                )
            found.setdefault(run.name, (source, run))
    missing = [name for name in first["plan"] if name not in found]
    if missing:
        raise ValueError(
            f"no finished run named {', '.join(map(repr, missing))} in {', '.join(s for s, _ in reports)}"
        )
    return [found[name][1] for name in first["plan"]], first


def scoring_fact(tables: Mapping[str, Any], bootstrap: int, seed: int, seeds: int) -> str:
    """The report's sentence on what was scored: the test tables' versions, the bootstrap, the seeds."""
    return (
        f"Test tables: {Tables.EVAL_PAIRS} v{tables.get(Tables.EVAL_PAIRS)}, {Tables.EVAL_NEXT} "
        f"v{tables.get(Tables.EVAL_NEXT)}; {bootstrap} bootstrap resamples, seed {seed}; "
        f"{seeds} training seed(s) per child."
    )


def merged_report(reports: Sequence[tuple[str, Mapping[str, Any]]]) -> tuple[dict[str, Any], str]:
    """report.json and report.md of one experiment from the runs of several (source, report) pairs
    (`merge_runs`): the figures one store holding every run would have reported."""
    scored, first = merge_runs(reports)
    children = [ChildPlan(**c) for c in first["plan_children"]]
    bootstrap, seed = int(first["scoring"]["bootstrap"]), int(first["scoring"]["seed"])
    reference, metrics = str(first["reference"]), list(first["metrics"])
    results = child_results(children, reference, first["run_metrics"], scored, bootstrap, seed)
    kept = ("description", "metrics", "run_metrics", "design", "scoring", "build_settings", "tables")
    summary = {
        **report_json(reference, metrics, results, str(first["experiment"])),
        **{k: first[k] for k in kept if k in first},
        **runs_record(first["plan"], children, scored),
        "merged_from": [source for source, _ in reports],
    }
    tables = first.get("tables", {})
    facts = [
        f"Merged from {len(reports)} report(s): {', '.join(source for source, _ in reports)} (design "
        f"{first['design']}).",
        scoring_fact(tables, bootstrap, seed, len(scored) // len(children)),
    ]
    document = render_report(
        str(first["experiment"]), str(first.get("description", "")), reference, metrics, results, facts
    )
    return summary, document
