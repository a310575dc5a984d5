"""`downbeat experiment --spec conf/experiments/NAME.yaml [--bootstrap N] [--json]`.

Trains a grid of runs as MLflow child runs under one parent run, scores each child on the same
versions of gold/eval_pairs and gold/eval_next, compares each with the spec's reference child
(paired bootstrap over users) and logs to the parent a markdown report (`report.md`, also
printed), `report.json`, a plot of each metric against each numeric grid setting, and the
children's validation curves. Every child trains and is scored on the table versions current
when the experiment starts, even if a build commits new ones meanwhile. A rerun of the same spec
on the same tables and configuration resumes the same parent: finished children are skipped, so
an interrupted experiment goes on where it stopped. Children log their models but never register
them.

A spec (every key but `description` and `set` required, and one of `grid` or `children`):
    name: recsys25-pnfrec
    description: what the experiment asks
    reference: sasrec               # the child every other is compared with
    metrics: [ndcg@10_pos, ndcg@10_neg, ndcg@10_diff]
    run_metrics: [feedback_cos_skip_down]   # optional: figures each child run logged, shown as they are
    seeds: 3                        # optional (default 1, or --seeds): each child under 3 seeds
    set: {train.softmax: full}      # config for every child, on top of --conf/--set
    grid: {model: [sasrec, pnfrec]} # every combination; names like `hybrid p_hard=0.5`
    children:                       # or each child by hand
      - {name: sasrec, model: sasrec, set: {train.beta: 0.0}}
Also runnable as `spark-submit jobs/experiment.py --spec FILE`.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import itertools
import json
import logging
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from downbeat.jobs.common import config_from, job_main, snapshots
from downbeat.jobs.config import Config, load_config
from downbeat.models.contract import Tables
from downbeat.pipelines.errors import ConfigError, InputError
from downbeat.pipelines.lakehouse import Lakehouse

log = logging.getLogger("downbeat.experiment")
SPEC_KEYS = ("name", "description", "reference", "metrics", "run_metrics", "seeds", "set", "grid", "children")
CHILD_KEYS = ("name", "model", "set")
DIGEST_TAG = "downbeat.experiment_digest"
EXPERIMENT_TAG = "downbeat.experiment"


@dataclasses.dataclass(frozen=True)
class Child:
    name: str
    model: str
    overrides: tuple[str, ...]  # KEY=VALUE, as --set takes them
    settings: dict[str, Any]  # the grid's values (for the plots)


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
    parser.add_argument("--json", action="store_true", help="print the table as one JSON object")


def _text(value: Any) -> str:
    """A setting's value as --set reads it back (YAML) to the same value and type."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        text = repr(value)  # YAML 1.1 wants a dot in the mantissa: 1e-05 would read as a string
        mantissa, e, exponent = text.partition("e")
        return f"{mantissa}.0e{exponent}" if e and "." not in mantissa else text
    if isinstance(value, str):
        return json.dumps(value)  # quoted: 'on', 'null' or '2024' stay strings
    return "null" if value is None else str(value)


def _mapping(value: Any, where: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise InputError(f"{where} must be a mapping of config keys to values, got {value!r}")
    return {str(k): v for k, v in value.items()}


def load_spec(path: str) -> Spec:
    """The spec at `path`, every key and name checked; bad input names the file and the key."""
    from downbeat.models.evaluation import METRICS
    from downbeat.models.settings import MODEL_NAMES

    file = Path(path)
    if not file.is_file():
        raise InputError(f"experiment spec {path} not found")
    try:
        raw = yaml.safe_load(file.read_text())
    except yaml.YAMLError as exc:
        raise InputError(f"experiment spec {path} is not YAML: {str(exc).splitlines()[0]}") from None
    if not isinstance(raw, dict):
        raise InputError(f"experiment spec {path} must be a mapping")
    unknown = sorted(set(raw) - set(SPEC_KEYS))
    if unknown:
        raise InputError(
            f"experiment spec {path}: unknown key '{unknown[0]}' (one of {', '.join(SPEC_KEYS)})"
        )
    for key in ("name", "reference", "metrics"):
        if not raw.get(key):
            raise InputError(f"experiment spec {path}: key '{key}' is required")
    if ("grid" in raw) == ("children" in raw):
        raise InputError(f"experiment spec {path}: give exactly one of 'grid' and 'children'")
    metrics = raw["metrics"]
    if not isinstance(metrics, list) or not all(isinstance(m, str) for m in metrics):
        raise InputError(f"experiment spec {path}: 'metrics' must be a list of metric names")
    for metric in metrics:
        if metric not in METRICS:
            raise InputError(
                f"experiment spec {path}: unknown metric '{metric}' (one of {', '.join(METRICS)})"
            )
    run_metrics = raw.get("run_metrics") or []
    if not isinstance(run_metrics, list) or not all(isinstance(m, str) for m in run_metrics):
        raise InputError(f"experiment spec {path}: 'run_metrics' must be a list of metric names")
    common = tuple(
        f"{k}={_text(v)}" for k, v in _mapping(raw.get("set"), f"experiment spec {path}: 'set'").items()
    )
    children = []
    if "grid" in raw:
        grid = _mapping(raw["grid"], f"experiment spec {path}: 'grid'")
        if "model" not in grid:
            raise InputError(f"experiment spec {path}: 'grid' must list 'model'")
        axes = {k: v if isinstance(v, list) else [v] for k, v in grid.items()}
        varied = [k for k, v in axes.items() if len(v) > 1]
        keys = list(axes)
        for combination in itertools.product(*(axes[k] for k in keys)):
            chosen = dict(zip(keys, combination, strict=True))
            model = str(chosen.pop("model"))
            label = [f"{k.rsplit('.', 1)[-1]}={chosen[k]}" for k in varied if k != "model"]
            name = " ".join([model, *label])
            overrides = common + tuple(f"{k}={_text(v)}" for k, v in chosen.items())
            children.append(Child(name, model, overrides, chosen))
    else:
        if not isinstance(raw["children"], list) or not raw["children"]:
            raise InputError(f"experiment spec {path}: 'children' must be a non-empty list")
        for i, entry in enumerate(raw["children"]):
            where = f"experiment spec {path}: children[{i}]"
            if not isinstance(entry, dict):
                raise InputError(f"{where} must be a mapping with name, model and set")
            extra = sorted(set(entry) - set(CHILD_KEYS))
            if extra:
                raise InputError(f"{where}: unknown key '{extra[0]}' (one of {', '.join(CHILD_KEYS)})")
            if not entry.get("name") or not entry.get("model"):
                raise InputError(f"{where}: 'name' and 'model' are required")
            own = _mapping(entry.get("set"), f"{where}: 'set'")
            overrides = common + tuple(f"{k}={_text(v)}" for k, v in own.items())
            children.append(Child(str(entry["name"]), str(entry["model"]), overrides, own))
    for child in children:
        for override in child.overrides:
            if override.startswith(("mlflow.", "lakehouse.")):
                raise InputError(
                    f"experiment spec {path}: child '{child.name}' sets '{override.split('=', 1)[0]}': "
                    "an experiment's runs share one tracking store and one lakehouse "
                    "(give mlflow.* and lakehouse.* with --set)"
                )
    names = [c.name for c in children]
    for child in children:
        if child.model not in MODEL_NAMES:
            raise InputError(
                f"experiment spec {path}: child '{child.name}' has unknown model '{child.model}' "
                f"(one of {', '.join(MODEL_NAMES)})"
            )
        if names.count(child.name) > 1:
            raise InputError(f"experiment spec {path}: two children are named '{child.name}'")
    if raw["reference"] not in names:
        raise InputError(
            f"experiment spec {path}: reference '{raw['reference']}' is not a child "
            f"(children: {', '.join(names)})"
        )
    seeds = raw.get("seeds", 1)
    if isinstance(seeds, bool) or not isinstance(seeds, int) or seeds < 1:
        raise InputError(
            f"experiment spec {path}: 'seeds' must be a whole number of at least 1, got {seeds!r}"
        )
    return Spec(
        path,
        str(raw["name"]),
        str(raw.get("description") or ""),
        str(raw["reference"]),
        tuple(metrics),
        tuple(run_metrics),
        tuple(children),
        raw,
        seeds,
    )


def seeded(spec: Spec, seeds: int, configs: dict[str, Config]) -> list[tuple[Child, int, str, Config]]:
    """Every run of the experiment: (child, seed index, run name, its configuration), the child's
    `train.seed` then the next ones. Under one seed a run is named as its child (an experiment
    started before seeds existed resumes); under several, `name seed=S`."""
    runs = []
    for child in spec.children:
        base = configs[child.name]
        for index in range(seeds):
            run_cfg = dataclasses.replace(
                base, train=dataclasses.replace(base.train, seed=base.train.seed + index)
            )
            name = child.name if seeds == 1 else f"{child.name} seed={run_cfg.train.seed}"
            runs.append((child, index, name, run_cfg))
    return runs


def seed_spread(values: list[dict[str, float]]) -> dict[str, float]:
    """Each figure's standard deviation across seeds (n - 1 in the denominator; NaN under one seed)."""
    import numpy as np

    if len(values) < 2:
        return {}
    return {k: float(np.std([v[k] for v in values], ddof=1)) for k in values[0]}


def child_configs(spec: Spec, args: argparse.Namespace) -> dict[str, Config]:
    """Each child's configuration: --conf, then --set, then the spec's settings for it."""
    conf = getattr(args, "conf_after", None) or args.conf
    base = [*args.overrides, *getattr(args, "overrides_after", [])]
    out = {}
    for child in spec.children:
        try:
            out[child.name] = load_config(conf, [*base, *child.overrides])
        except ConfigError as exc:
            raise InputError(f"experiment spec {spec.path}: child '{child.name}': {exc}") from None
    return out


def command(args: argparse.Namespace) -> int:
    from mlflow.tracking import MlflowClient

    from downbeat.jobs import training
    from downbeat.models.evaluation import EVAL_TABLES, compare, eval_frames, evaluate, mean_terms
    from downbeat.models.lifecycle import CHILD_TAG, INPUT_TABLES, MAY_BE_EMPTY
    from downbeat.models.plots import plot_validation_curves
    from downbeat.models.registry import load_pyfunc
    from downbeat.models.report import ChildResult, plot_against_settings, render_report, report_json
    from downbeat.models.tracking import experiment_id

    cfg = config_from(args)
    if args.bootstrap < 1:
        raise InputError(f"--bootstrap must be at least 1, got {args.bootstrap}")
    spec = load_spec(args.spec)
    configs = child_configs(spec, args)
    lakehouse = Lakehouse(None, cfg.lakehouse.root)
    inputs = snapshots(lakehouse, INPUT_TABLES, MAY_BE_EMPTY)
    for child in spec.children:  # before anything is tracked: tables no child can train on are bad input
        try:
            training.check_inputs(lakehouse, inputs, configs[child.name])
        except InputError as exc:
            raise InputError(f"experiment spec {spec.path}: child '{child.name}': {exc}") from None
    seeds = spec.seeds if args.seeds is None else args.seeds
    if seeds < 1:
        raise InputError(f"--seeds must be at least 1, got {seeds}")
    plan = seeded(spec, seeds, configs)
    versions = {t: s.version for t, s in inputs.items()}
    digest = hashlib.sha256(
        json.dumps(
            {  # what the children are trained on and with; not the report's description or metrics
                "children": {name: [c.model, dataclasses.asdict(run_cfg)] for c, _, name, run_cfg in plan},
                "tables": versions,
            },
            sort_keys=True,
            default=str,
        ).encode()
    ).hexdigest()[:16]

    experiment = experiment_id(cfg.mlflow.tracking_uri, cfg.mlflow.experiment, cfg.mlflow.artifact_root)
    client = MlflowClient(cfg.mlflow.tracking_uri)
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
        client.log_dict(parent, spec.raw, "spec.yaml")
        client.log_param(parent, "reference", spec.reference)
        client.log_param(parent, "seeds", str(seeds))
        for name, version in sorted(versions.items()):
            client.log_param(parent, f"table.{name}", str(version))
    finished = {
        r.data.tags[CHILD_TAG]: r.info.run_id
        for r in client.search_runs(
            [experiment],
            filter_string=f"tags.`mlflow.parentRunId` = '{parent}' and attributes.status = 'FINISHED'",
        )
        if CHILD_TAG in r.data.tags
    }
    log.info(
        "experiment %s: parent run %s, %d of %d runs already finished (%d children, %d seed(s) each)",
        spec.name,
        parent,
        sum(name in finished for _, _, name, _ in plan),
        len(plan),
        len(spec.children),
        seeds,
    )
    try:
        runs = {}
        for child, _, name, run_cfg in plan:
            if name in finished:
                log.info("run %s: finished in run %s, skipped", name, finished[name])
                runs[name] = finished[name]
                continue
            log.info("run %s: training %s (%s)", name, child.model, ", ".join(child.overrides) or "defaults")
            result = training.run(run_cfg, child.model, parent_run=parent, child_name=name, tables=inputs)
            runs[name] = result.run_id

        tables = {t: inputs[t] for t in EVAL_TABLES}  # the versions the digest names, whatever came since
        pairs, next_rows = eval_frames(tables)
        evaluations: dict[str, list[Any]] = {}
        for child, _, name, _ in plan:
            model = load_pyfunc(
                f"runs:/{runs[name]}/model",
                cfg.mlflow.tracking_uri,
                tables[Tables.TRACKS],
                cfg.lakehouse.root,
            )
            evaluation = evaluate(
                model.predict, pairs, next_rows, tables[Tables.TRACKS].rows, chunk=cfg.train.eval_batch_size
            )
            evaluations.setdefault(child.name, []).append(evaluation)
        reference = evaluations[spec.reference]
        reference_terms = mean_terms([e.terms for e in reference])
        results = []
        for child in spec.children:
            own = evaluations[child.name]
            first_run = client.get_run(runs[next(n for c, _, n, _ in plan if c.name == child.name)])
            differences, diff_spread = {}, {}
            if child.name != spec.reference:
                differences = compare(
                    mean_terms([e.terms for e in own]),
                    reference_terms,
                    samples=args.bootstrap,
                    seed=args.seed,
                )
                diff_spread = seed_spread(
                    [
                        {k: e.metrics[k] - r.metrics[k] for k in e.metrics}
                        for e, r in zip(own, reference, strict=True)
                    ]
                )
            names = [n for c, _, n, _ in plan if c.name == child.name]
            epochs = [client.get_run(runs[n]).data.metrics for n in names]
            results.append(
                ChildResult(
                    name=child.name,
                    model=child.model,
                    run_id=runs[names[0]],
                    settings=child.settings,
                    metrics=mean_terms([e.terms for e in own]).point(),
                    differences=differences,
                    best_epoch=int(first_run.data.metrics.get("best_epoch", 0)),
                    logged={m: first_run.data.metrics.get(m, float("nan")) for m in spec.run_metrics},
                    epochs_run=int(max(e.get("epochs_run", 0) for e in epochs)),
                    seeds=seeds,
                    spread=seed_spread([e.metrics for e in own]),
                    diff_spread=diff_spread,
                )
            )
        facts = [
            f"Parent run {parent}; spec {spec.path} (digest {digest}).",
            f"Test tables: gold/eval_pairs v{tables['gold/eval_pairs'].version}, "
            f"gold/eval_next v{tables['gold/eval_next'].version}; "
            f"{args.bootstrap} bootstrap resamples, seed {args.seed}; {seeds} training seed(s) per child.",
        ]
        report = render_report(spec.name, spec.description, spec.reference, spec.metrics, results, facts)
        summary = report_json(spec.reference, spec.metrics, results)
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp)
            (folder / "report.md").write_text(report)
            (folder / "report.json").write_text(json.dumps(summary, indent=2, sort_keys=True))
            curves = {name: validation_curve(client, runs[name]) for _, _, name, _ in plan}
            plot_validation_curves(curves, folder / "validation_curves.png", "figure each child selected on")
            plot_against_settings(results, spec.reference, spec.metrics, folder)
            client.log_artifacts(parent, str(folder))
    except BaseException:
        client.set_terminated(parent, status="FAILED")
        raise
    client.set_terminated(parent, status="FINISHED")
    if args.json:
        print(json.dumps({**summary, "parent_run": parent}, sort_keys=True))
    else:
        print(report, end="")
        print(parent)
    return 0


def validation_curve(client: Any, run_id: str) -> list[tuple[int, float]]:
    """(epoch, value) of the validation figure a run selected on (its `downbeat.selected_on` tag)."""
    from downbeat.models.lifecycle import SELECTED_TAG
    from downbeat.models.tracking import metric_name

    selected = client.get_run(run_id).data.tags.get(SELECTED_TAG, "paired_accuracy")
    return [(m.step, m.value) for m in client.get_metric_history(run_id, f"val_{metric_name(selected)}")]


def main(argv: list[str] | None = None) -> int:
    return job_main("experiment", __doc__.splitlines()[0] if __doc__ else None, command, add_arguments, argv)


if __name__ == "__main__":
    sys.exit(main())
