"""`downbeat experiment --spec conf/experiments/NAME.yaml [--bootstrap N] [--only RUN] [--json]`.

Trains a grid of runs as MLflow child runs under one parent run, scores each child on the same
versions of gold/eval_pairs and gold/eval_next, compares each with the spec's reference child
(paired bootstrap over users) and logs to the parent a markdown report (`report.md`, also
printed), `report.json`, a plot of each metric against each numeric grid setting, and the
children's validation curves. Every child trains and is scored on the table versions current
when the experiment starts, even if a build commits new ones meanwhile. A rerun of the same spec
on the same tables and configuration resumes the same parent: finished children are skipped, and
a child stopped part way resumes in its own run from its last epoch checkpoint, so an interrupted
experiment goes on where it stopped. `--only RUN` (repeatable) trains just those runs or children,
for processes that share an experiment's runs: the one that finds them all finished reports, the
others log (and with --json print) the runs scored so far as runs.json, which `downbeat claims`
merges with the reports of other stores (models/merging.py).
Children log their models but never register them.

A spec (every key but `description` and `set` required, and one of `grid` or `children`):
    name: recsys25-pnfrec
    description: what the experiment asks
    reference: sasrec               # the child every other is compared with
    metrics: [ndcg@10_pos, ndcg@10_neg, ndcg@10_diff]
    run_metrics: [feedback_cos_skip_down]   # optional: figures each child run logged, shown as they are
    seeds: 3                        # optional (default 1, or --seeds): each child under 3 seeds
    set: {model.sasrec.softmax: full}  # config for every child, on top of --conf/--set
    build: {split.cutoff_quantile: 0.9} # optional: settings the tables must have been built with
    grid: {model: [sasrec, pnfrec]} # every combination; names like `hybrid p_hard=0.5`
    children:                       # or each child by hand; `versus`: compared with that child
      - {name: sasrec, model: sasrec, set: {model.sasrec.beta: 0.0}}   # instead of the reference
      - {name: gru4rec infonce, model: gru4rec, set: {model.gru4rec.beta: 0.5}, versus: gru4rec}
Also runnable as `spark-submit jobs/experiment.py --spec FILE`.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
from collections.abc import Sequence
from typing import Any

from downbeat.jobs.common import job_main, snapshots
from downbeat.jobs.config import Config, load_config
from downbeat.jobs.specs import child_configs, load_spec
from downbeat.models.contract import Tables
from downbeat.models.experiment import ExperimentResult, PlannedRun, Spec
from downbeat.pipelines.errors import InputError
from downbeat.pipelines.lakehouse import Lakehouse

log = logging.getLogger("downbeat.experiment")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--spec", required=True, metavar="FILE", help="the experiment's YAML spec")
    parser.add_argument(
        "--bootstrap", type=int, default=1000, metavar="N", help="resamples of users (default 1000)"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the resampling (default 0)")
    parser.add_argument(
        "--seeds",
        type=int,
        default=None,
        metavar="N",
        help="train every child under N seeds (train.seed, +1, ...; default: the spec's seeds, else 1)",
    )
    parser.add_argument(
        "--only",
        action="append",
        default=None,
        metavar="RUN",
        help="train only this run ('sasrec seed=8') or child (each of its seeds), repeatable; "
        "the others are left to other processes under the same parent, and whichever finds every "
        "run finished reports",
    )
    parser.add_argument("--json", action="store_true", help="print the table as one JSON object")


def seeded(spec: Spec, seeds: int, configs: dict[str, Config]) -> list[PlannedRun]:
    """Every run of the experiment (child, seed index, run name, its configuration), the child's
    `train.seed` then the next ones, seed by seed: every child under its first seed before any
    under its second, so an experiment stopped part way has whole seeds to pair. Under one seed a
    run is named as its child (an experiment started before seeds existed resumes); under several,
    `name seed=S`."""
    runs = []
    for index in range(seeds):
        for child in spec.children:
            base = configs[child.name]
            run_cfg = dataclasses.replace(
                base, train=dataclasses.replace(base.train, seed=base.train.seed + index)
            )
            name = child.name if seeds == 1 else f"{child.name} seed={run_cfg.train.seed}"
            runs.append(PlannedRun(child, index, name, run_cfg))
    return runs


def selected(spec: Spec, plan: list[PlannedRun], names: Sequence[str] | None) -> frozenset[str] | None:
    """The runs `--only` names: a run by its name, or a child by its (each of its seeds); None: all.
    A name that is neither is bad input naming it and what the spec plans."""
    if names is None:
        return None
    chosen: set[str] = set()
    for name in names:
        runs = {run.name for run in plan if name in (run.name, run.child.name)}
        if not runs:
            raise InputError(
                f"--only {name!r}: experiment spec {spec.path} plans no such run or child; its runs "
                f"are {', '.join(repr(run.name) for run in plan)}"
            )
        chosen |= runs
    return frozenset(chosen)


def check_build(spec: Spec, configs: dict[str, Config], built: dict[str, Any] | None, version: int) -> None:
    """Every build setting the spec names (in `build`, `set` or a child's) is what the tables were
    built with (`built`: gold/sequences' record at `version`), so no child trains on tables built
    otherwise than the spec says; bad input names the setting and both values."""
    if not spec.build_keys():
        return
    if built is None:
        raise InputError(
            f"experiment spec {spec.path} names build settings ({', '.join(spec.build_keys())}), but "
            f"table gold/sequences version {version} does not record its build's settings (built by an "
            "older release): run `downbeat build` as the spec's description says"
        )
    for child in spec.children:
        wanted = configs[child.name].features.record()
        for key in spec.build_keys(child):
            if wanted[key] != built.get(key):
                raise InputError(
                    f"experiment spec {spec.path}: child '{child.name}' needs tables built with "
                    f"{key}={json.dumps(wanted[key])}, but table gold/sequences version {version} was "
                    f"built with {key}={json.dumps(built.get(key))}: build as the spec's description says"
                )


def run(
    spec_path: str,
    conf: str | None = None,
    overrides: Sequence[str] = (),
    *,
    seeds: int | None = None,
    bootstrap: int = 1000,
    seed: int = 0,
    only: Sequence[str] | None = None,
) -> ExperimentResult:
    """Train every child of the spec at `spec_path` (under `seeds` seeds, else the spec's) on one
    snapshot of the gold tables, each configured by `conf`, `overrides` and its own settings, under
    one MLflow parent run; score them on the same evaluation rows and report them paired. `only`:
    train just these runs or children (models/experiment.py run_experiment)."""
    from downbeat.jobs import training
    from downbeat.models.experiment import Scoring, run_experiment
    from downbeat.models.lifecycle import INPUT_TABLES, MAY_BE_EMPTY
    from downbeat.models.registry import load_pyfunc

    cfg = load_config(conf, overrides)
    if bootstrap < 1:
        raise InputError(f"--bootstrap must be at least 1, got {bootstrap}")
    spec = load_spec(spec_path)
    configs = child_configs(spec, conf, overrides)
    lakehouse = Lakehouse(None, cfg.lakehouse.root)
    inputs = snapshots(lakehouse, INPUT_TABLES, MAY_BE_EMPTY)
    for child in spec.children:  # before anything is tracked: tables no child can train on are bad input
        try:
            training.check_inputs(lakehouse, inputs, configs[child.name])
        except InputError as exc:
            raise InputError(f"experiment spec {spec.path}: child '{child.name}': {exc}") from None
    sequences = inputs[Tables.SEQUENCES]
    built = training.build_settings(lakehouse, sequences)
    check_build(spec, configs, built, sequences.version)
    seeds = spec.seeds if seeds is None else seeds
    if seeds < 1:
        raise InputError(f"--seeds must be at least 1, got {seeds}")

    def train(run: PlannedRun, parent: str, stopped: list[str]) -> str:
        # every run on the snapshots taken above, whatever a build commits meanwhile
        outcome = training.run(
            run.settings,
            run.child.model,
            resume=resumable(run, stopped),
            parent_run=parent,
            child_name=run.name,
            tables=inputs,
        )
        return outcome.run_id

    def load(run_id: str) -> Any:
        tracks = inputs[Tables.TRACKS]
        return load_pyfunc(f"runs:/{run_id}/model", cfg.mlflow.tracking_uri, tracks, cfg.lakehouse.root)

    scoring = Scoring(bootstrap, seed, cfg.train.eval_batch_size)
    plan = seeded(spec, seeds, configs)
    chosen = selected(spec, plan, only)
    return run_experiment(spec, plan, inputs, cfg.mlflow, train, load, scoring, built, chosen)


def resumable(run: PlannedRun, stopped: list[str]) -> str | None:
    """The checkpoint folder to resume `run` from: that of the newest of `stopped` (its runs that
    stopped part way, newest first) holding an epoch saved by that same run. The run resumes there,
    in the same MLflow run, with the weights a run never stopped would have (models/train.fit).
    None (train again, from the first epoch) when no such checkpoint is left."""
    from downbeat.jobs import training
    from downbeat.models.lifecycle import checkpoint_folder

    for run_id in stopped:
        folder = checkpoint_folder(run.settings.train, run_id)
        try:
            saved, saved_by = training.resumed(str(folder), run.child.model)
        except InputError:  # no epoch saved there (stopped before its first), or not this model's
            continue
        if saved_by == run_id:
            log.info("run %s: resuming run %s from %s", run.name, run_id, saved)
            return str(folder)
    if stopped:
        log.info(
            "run %s: no checkpoint of its stopped run(s) %s; training again", run.name, ", ".join(stopped)
        )
    return None


def command(args: argparse.Namespace) -> int:
    conf = getattr(args, "conf_after", None) or args.conf
    overrides = [*args.overrides, *getattr(args, "overrides_after", [])]
    result = run(
        args.spec, conf, overrides, seeds=args.seeds, bootstrap=args.bootstrap, seed=args.seed, only=args.only
    )
    if result.waiting and not args.json:
        print(f"waiting for {len(result.waiting)} run(s): {', '.join(result.waiting)}")
        print(result.parent)
    elif args.json:  # waiting: the scored runs so far (runs.json), with `waiting`
        print(json.dumps({**result.summary, "parent_run": result.parent}, sort_keys=True))
    else:
        print(result.report, end="")
        print(result.parent)
    return 0


def main(argv: list[str] | None = None) -> int:
    return job_main("experiment", __doc__.splitlines()[0] if __doc__ else None, command, add_arguments, argv)


if __name__ == "__main__":
    sys.exit(main())
