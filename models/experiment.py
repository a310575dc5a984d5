"""An experiment's runs under one MLflow parent run: train each planned run (skipping those a
previous attempt finished), score every run on the same test table versions, compare each child
with the reference child (paired bootstrap over users, spread across seeds) and log the report.

Plain data in: the spec (parsed by jobs/experiment.py), the plan of runs, the input snapshots and
two callables, `train` (one run, through the job's training path) and `load` (a run's logged
model, checked against the catalog). Never imports pyspark.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from downbeat.models.contract import Tables
from downbeat.models.data import TableSnapshot
from downbeat.models.merging import (
    RUN_FIGURES,
    ChildPlan,
    ScoredRun,
    child_results,
    runs_record,
    scoring_fact,
)
from downbeat.models.redaction import redact, redact_assignment
from downbeat.models.tracking import MlflowSettings
from downbeat.pipelines.settings import FeatureSettings

log = logging.getLogger("downbeat.experiment")
DIGEST_TAG = "downbeat.experiment_digest"
EXPERIMENT_TAG = "downbeat.experiment"
# the config sections build reads: FeatureSettings' fields (a module without pyspark)
BUILD_SECTIONS = tuple(f.name for f in dataclasses.fields(FeatureSettings))


@dataclasses.dataclass(frozen=True)
class Child:
    name: str
    model: str
    overrides: tuple[str, ...]  # KEY=VALUE, as --set takes them
    settings: dict[str, Any]  # the grid's values (for the plots)
    versus: str = ""  # the child this one is compared with (empty: the spec's reference)


@dataclasses.dataclass(frozen=True)
class Spec:
    path: str
    name: str
    description: str
    reference: str
    metrics: tuple[str, ...]
    run_metrics: tuple[str, ...]
    children: tuple[Child, ...]
    raw: dict[str, Any]
    seeds: int = 1  # runs per child, under train.seed, train.seed + 1, ...
    build: tuple[str, ...] = ()  # KEY=VALUE: the build settings the tables must have been built with

    def build_keys(self, child: Child | None = None) -> list[str]:
        """The build settings (sessions, skips, split, sequences, eval) the spec names: in `build`,
        and in `set` or a child's (`child`'s alone, else every child's)."""
        children = self.children if child is None else (child,)
        named = [o.split("=", 1)[0] for o in (*self.build, *(x for c in children for x in c.overrides))]
        return sorted({k for k in named if k.split(".", 1)[0] in BUILD_SECTIONS})


@dataclasses.dataclass(frozen=True)
class PlannedRun:
    """One training run: a child under one seed. `settings` is the job's whole configuration for
    it (a dataclass: it enters the experiment's digest)."""

    child: Child
    seed_index: int
    name: str
    settings: Any


@dataclasses.dataclass(frozen=True)
class ExperimentResult:
    parent: str  # the parent run's id
    report: str  # report.md ("" while runs are waiting)
    summary: dict[str, Any]  # report.json and the scored runs (runs.json alone while runs are waiting)
    waiting: tuple[str, ...] = ()  # planned runs not finished yet (left to other processes by `only`)


# (the run, the parent run id, the ids of its runs that stopped part way, newest first) -> the run's id
Trainer = Callable[[PlannedRun, str, list[str]], str]
Loader = Callable[[str], Any]  # a run id -> its logged pyfunc


@dataclasses.dataclass(frozen=True)
class Scoring:
    """How the runs are scored: the test bootstrap and the scoring batch."""

    bootstrap: int
    seed: int
    eval_batch_size: int


def run_experiment(
    spec: Spec,
    plan: list[PlannedRun],
    inputs: dict[str, TableSnapshot],
    settings: MlflowSettings,
    train: Trainer,
    load: Loader,
    scoring: Scoring,
    built: dict[str, Any] | None = None,
    only: frozenset[str] | None = None,
) -> ExperimentResult:
    """Every planned run trained (or found finished) under one parent, scored and reported; the
    parent ends FINISHED, or FAILED with whatever stopped it. `built`: the build settings the
    tables record (FeatureSettings.record), reported beside the figures.

    only: the names of the runs this process trains, the others left to processes of their own
    under the same parent (one store, several machines or cores). Whichever process finds every run
    finished when its own are done scores and reports them; the others score the runs finished so
    far, log them as `runs.json` (models/merging.py: such records of separate stores merge into one
    report) and return the runs still waiting, leaving the parent RUNNING."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(settings.tracking_uri)
    versions = {t: s.version for t, s in inputs.items()}
    digest = plan_digest(plan, versions)
    parent, finished, stopped = _parent_run(
        client, settings, spec, digest, versions, len(plan) // len(spec.children)
    )
    log.info(
        "experiment %s: parent run %s, %d of %d runs already finished (%d children)",
        *(spec.name, parent, sum(run.name in finished for run in plan), len(plan), len(spec.children)),
    )
    tables = {t: inputs[t] for t in (Tables.EVAL_PAIRS, Tables.EVAL_NEXT, Tables.TRACKS)}
    about = {
        **{"digest": digest, "design": design_digest(plan, versions), "build_settings": built or {}},
        "scoring": {"bootstrap": scoring.bootstrap, "seed": scoring.seed},
        "tables": {t: tables[t].version for t in (Tables.EVAL_PAIRS, Tables.EVAL_NEXT)},
    }
    try:
        runs = _train_runs(plan, parent, finished, stopped, train, only)
        if only is not None:  # the runs of other processes that finished meanwhile
            runs = {**_children(client, parent)[0], **runs}
        waiting = tuple(run.name for run in plan if run.name not in runs)
        if not waiting:
            scored = _score_runs(client, spec, plan, runs, tables, load, scoring)
            facts = _facts(parent, spec, len(plan) // len(spec.children), about)
            result = _log_report(client, parent, spec, plan, runs, scored, facts, about)
    except BaseException:
        client.set_terminated(parent, status="FAILED")
        raise
    if waiting:  # outside: the parent is the other processes' too, whatever happens here
        log.info("waiting for %s (the process that finishes the last run reports)", ", ".join(waiting))
        scored = _score_runs(client, spec, plan, runs, tables, load, scoring)
        partial = {**_runs_record(spec, plan, scored, about), "waiting": list(waiting)}
        client.log_dict(parent, partial, "runs.json")
        return ExperimentResult(parent, "", partial, waiting)
    client.set_terminated(parent, status="FINISHED")
    return result


def _facts(parent: str, spec: Spec, seeds: int, about: dict[str, Any]) -> list[str]:
    """What the report says it was run on."""
    tables, scoring, built = about["tables"], about["scoring"], about["build_settings"]
    facts = [
        f"Parent run {parent}; spec {spec.path} (digest {about['digest']}).",
        scoring_fact(tables, scoring["bootstrap"], scoring["seed"], seeds),
    ]
    if built and spec.build_keys():
        named = ", ".join(f"{k}={json.dumps(built.get(k))}" for k in spec.build_keys())
        facts.append(f"Tables built with {named} (every build setting: report.json's build_settings).")
    return facts


def _train_runs(
    plan: list[PlannedRun],
    parent: str,
    finished: dict[str, str],
    stopped: dict[str, list[str]],
    train: Trainer,
    only: frozenset[str] | None,
) -> dict[str, str]:
    """Each run's id by name: those finished before, and those this process trains now (`only`)."""
    runs = {}
    for run in plan:
        if run.name in finished:
            log.info("run %s: finished in run %s, skipped", run.name, finished[run.name])
            runs[run.name] = finished[run.name]
        elif only is None or run.name in only:
            overrides = ", ".join(map(redact_assignment, run.child.overrides)) or "defaults"
            log.info("run %s: training %s (%s)", run.name, run.child.model, overrides)
            runs[run.name] = train(run, parent, stopped.get(run.name, []))
    return runs


def plan_digest(plan: list[PlannedRun], versions: dict[str, int]) -> str:
    """What the runs are trained on and with (not the report's description or metrics): a rerun
    with the same digest resumes the same parent run."""
    what = {
        "children": {run.name: [run.child.model, dataclasses.asdict(run.settings)] for run in plan},
        "tables": versions,
    }
    return hashlib.sha256(json.dumps(what, sort_keys=True, default=str).encode()).hexdigest()[:16]


# where a run is kept, not what it trains: left out of the design digest, so that runs of one design
# in separate stores merge (models/merging.py)
WHERE = ("spark", "delta", "lakehouse", "mlflow", "registry", "source_files")


def design_digest(plan: list[PlannedRun], versions: dict[str, int]) -> str:
    """plan_digest without where the runs are kept (WHERE, train.checkpoint_dir): the same for the
    same spec, seeds and configuration on the same table versions, whichever store holds them."""
    what: dict[str, Any] = {"children": {}, "tables": versions}
    for run in plan:
        settings = {k: v for k, v in dataclasses.asdict(run.settings).items() if k not in WHERE}
        settings["train"] = {k: v for k, v in settings["train"].items() if k != "checkpoint_dir"}
        what["children"][run.name] = [run.child.model, settings]
    return hashlib.sha256(json.dumps(what, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _parent_run(
    client: Any, settings: MlflowSettings, spec: Spec, digest: str, versions: dict[str, int], seeds: int
) -> tuple[str, dict[str, str], dict[str, list[str]]]:
    """The parent run of this digest (reopened) or a new one, and its runs (_children)."""
    from downbeat.models.tracking import experiment_id

    experiment = experiment_id(settings.tracking_uri, settings.experiment, settings.artifact_root)
    found = client.search_runs(
        [experiment],
        filter_string=f"tags.`{DIGEST_TAG}` = '{digest}'",
        order_by=["attributes.start_time DESC"],
    )
    if found:
        parent = found[0].info.run_id
        client.update_run(parent, status="RUNNING")
    else:
        parent = client.create_run(
            experiment, run_name=spec.name, tags={DIGEST_TAG: digest, EXPERIMENT_TAG: spec.name}
        ).info.run_id
        client.log_dict(parent, redact(spec.raw), "spec.yaml")
        client.log_param(parent, "reference", spec.reference)
        client.log_param(parent, "seeds", str(seeds))
        for name, version in sorted(versions.items()):
            client.log_param(parent, f"table.{name}", str(version))
    return parent, *_children(client, parent)


def _children(client: Any, parent: str) -> tuple[dict[str, str], dict[str, list[str]]]:
    """The parent's finished runs by name, and by name the runs that did not finish (stopped part
    way: failed, killed, or left running), newest first."""
    from downbeat.models.lifecycle import CHILD_TAG

    children = client.search_runs(
        [client.get_run(parent).info.experiment_id],
        filter_string=f"tags.`mlflow.parentRunId` = '{parent}'",
        order_by=["attributes.start_time DESC"],
    )
    named = [r for r in children if CHILD_TAG in r.data.tags]
    finished = {r.data.tags[CHILD_TAG]: r.info.run_id for r in named if r.info.status == "FINISHED"}
    stopped: dict[str, list[str]] = {}
    for r in named:
        if r.info.status != "FINISHED" and r.data.tags[CHILD_TAG] not in finished:
            stopped.setdefault(r.data.tags[CHILD_TAG], []).append(r.info.run_id)
    return finished, stopped


def _score_runs(
    client: Any,
    spec: Spec,
    plan: list[PlannedRun],
    runs: dict[str, str],
    tables: dict[str, TableSnapshot],
    load: Loader,
    scoring: Scoring,
) -> list[ScoredRun]:
    """Each finished run (of `runs`, in plan order) scored on the test tables the digest names, with
    the figures it logged itself."""
    from downbeat.models.evaluation import eval_frames, evaluate

    pairs, next_rows = eval_frames(tables)
    scored = []
    for run in plan:
        if run.name not in runs:
            continue
        model = load(runs[run.name])
        n_tracks = tables[Tables.TRACKS].rows
        evaluation = evaluate(model.predict, pairs, next_rows, n_tracks, chunk=scoring.eval_batch_size)
        metrics = client.get_run(runs[run.name]).data.metrics
        logged = {k: float(metrics[k]) for k in (*RUN_FIGURES, *spec.run_metrics) if k in metrics}
        seed = run.settings.train.seed
        scored.append(
            ScoredRun(
                run.name, run.child.name, run.seed_index, seed, runs[run.name], logged, evaluation.terms
            )
        )
    return scored


def child_plans(spec: Spec) -> list[ChildPlan]:
    return [ChildPlan(c.name, c.model, c.settings, c.versus) for c in spec.children]


def _runs_record(
    spec: Spec, plan: list[PlannedRun], scored: list[ScoredRun], about: dict[str, Any]
) -> dict[str, Any]:
    """runs.json: the experiment, what it ran on (`about`), the spec's side of a report (what
    merging reports needs) and the scored runs."""
    return {
        "experiment": spec.name,
        **about,
        "description": spec.description,
        "reference": spec.reference,
        "metrics": list(spec.metrics),
        "run_metrics": list(spec.run_metrics),
        **runs_record([run.name for run in plan], child_plans(spec), scored),
    }


def _log_report(
    client: Any,
    parent: str,
    spec: Spec,
    plan: list[PlannedRun],
    runs: dict[str, str],
    scored: list[ScoredRun],
    facts: list[str],
    about: dict[str, Any],
) -> ExperimentResult:
    """report.md, report.json, runs.json (the scored runs, which merge: models/merging.py), the
    validation curves and the plots against settings, on the parent."""
    from downbeat.models.plots import plot_validation_curves
    from downbeat.models.report import plot_against_settings, render_report, report_json

    scoring = about["scoring"]
    results = child_results(
        child_plans(spec), spec.reference, spec.run_metrics, scored, scoring["bootstrap"], scoring["seed"]
    )
    report = render_report(spec.name, spec.description, spec.reference, spec.metrics, results, facts)
    summary = {**report_json(spec.reference, spec.metrics, results, spec.name), **about}
    record = _runs_record(spec, plan, scored, about)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / "report.md").write_text(report)
        (folder / "report.json").write_text(json.dumps(summary, indent=2, sort_keys=True))
        (folder / "runs.json").write_text(json.dumps(record, sort_keys=True))  # per-user lists: compact
        curves = {run.name: validation_curve(client, runs[run.name]) for run in plan}
        plot_validation_curves(curves, folder / "validation_curves.png", "figure each child selected on")
        plot_against_settings(results, spec.reference, spec.metrics, folder)
        client.log_artifacts(parent, str(folder))
    return ExperimentResult(parent, report, {**record, **summary})


def validation_curve(client: Any, run_id: str) -> list[tuple[int, float]]:
    """(epoch, value) of the validation figure a run selected on (its `downbeat.selected_on` tag)."""
    from downbeat.models.lifecycle import SELECTED_TAG
    from downbeat.models.tracking import metric_name

    selected = client.get_run(run_id).data.tags.get(SELECTED_TAG, "paired_accuracy")
    return [(m.step, m.value) for m in client.get_metric_history(run_id, f"val_{metric_name(selected)}")]
