"""`downbeat demo [--root DIR] [--store URI] [--users N] [--days D] [--spec FILE]`: the whole product
on synthetic data.

synth -> ingest -> build -> train the two children of an experiment spec (conf/experiments/demo.yaml:
the `baseline`, its reference, and the challenger `pooled`), each under the spec's settings ->
`compare` the two registered models (in a fresh process, from the registry) -> a comparison table
with two reference scorers on the same pairs: `oracle` (the generator's true appeal) and
`popularity` (pre-cut-off play counts). The build takes the spec's `build` settings.
Everything (raw log, lakehouse, MLflow store, checkpoints, comparison.json) goes under --root,
which must be empty or absent; the registry ends with a champion chosen on validation data.
With --store (e.g. s3://bucket/demo, also empty), the lakehouse and MLflow's artifacts go there
instead; the tracking database, checkpoints, raw log and comparison.json stay under --root.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from downbeat.jobs.common import job_main
from downbeat.jobs.config import PROJECT_ROOT, load_config
from downbeat.models.contract import Tables
from downbeat.pipelines.errors import InputError

SPEC = PROJECT_ROOT / "conf" / "experiments" / "demo.yaml"
REFERENCES = ("oracle", "popularity")
ROWS = (
    ("paired_accuracy", "paired accuracy"),
    ("paired_accuracy_pooled", "paired accuracy, pooled"),
    ("auc", "mean user AUC"),
    ("hr@10_pos", "HR@10 positive"),
    ("hr@10_neg", "HR@10 negative"),
    ("hr@10_diff", "HR@10 pos - neg"),
    ("ndcg@10_pos", "NDCG@10 positive"),
    ("ndcg@10_neg", "NDCG@10 negative"),
    ("ndcg@10_diff", "NDCG@10 pos - neg"),
    ("map@10", "MAP@10"),
    ("skip_mrr@10", "skip MRR@10 (lower better)"),
    ("coverage", "coverage"),
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--root", default="demo", metavar="DIR", help="where everything goes (default demo/)")
    parser.add_argument("--users", type=int, default=5000, help="synthetic listeners (default 5000)")
    parser.add_argument("--days", type=int, default=49, help="days of listening (default 49)")
    parser.add_argument(
        "--tracks-per-station", type=int, default=50, help="catalog size per station (default 50)"
    )
    parser.add_argument("--seed", type=int, default=7, help="the generator's seed (default 7)")
    parser.add_argument(
        "--spec",
        default=str(SPEC),
        metavar="FILE",
        help="the experiment spec whose two children are trained: its reference and a challenger "
        "(default conf/experiments/demo.yaml)",
    )
    parser.add_argument(
        "--store",
        metavar="URI",
        help="put the lakehouse and MLflow's artifacts under this URI (e.g. s3://bucket/demo), not --root",
    )


def demo_settings(root: Path, store: str | None = None) -> list[str]:
    """The overrides that put every output of the demo under `root` (tables and artifacts under
    `store` when given)."""
    shared = store.rstrip("/") if store else str(root)
    return [
        f"lakehouse.root={shared}/lakehouse",
        f"mlflow.tracking_uri=sqlite:///{root / 'mlruns.db'}",
        f"mlflow.artifact_root={shared}/mlartifacts",
        f"train.checkpoint_dir={root / 'checkpoints'}",
    ]


def check_store_empty(store: str) -> None:
    """--store must hold nothing yet: the demo never writes over someone's tables."""
    import pyarrow.fs as pafs

    try:
        fs, base = pafs.FileSystem.from_uri(store)
        found = fs.get_file_info(pafs.FileSelector(base, recursive=True, allow_not_found=True))
    except Exception as exc:
        raise InputError(f"--store {store}: {str(exc).strip().splitlines()[0]}") from None
    if found:
        raise InputError(f"--store {store} is not empty: the demo writes only where nothing is yet")


def demo_models(spec: Any) -> tuple[Any, Any]:
    """The spec's reference child and its one challenger (bad input otherwise)."""
    names = [c.name for c in spec.children]
    others = [c for c in spec.children if c.name != spec.reference]
    if len(spec.children) != 2 or len(others) != 1:
        raise InputError(
            f"experiment spec {spec.path}: the demo trains a reference and one challenger, "
            f"but the spec has {len(names)} children ({', '.join(names)})"
        )
    reference = next(c for c in spec.children if c.name == spec.reference)
    return reference, others[0]


def empty_root(args: argparse.Namespace) -> Path:
    """--root, resolved, when it is empty or new (and --store, when given, empty); bad input otherwise."""
    root = Path(args.root).resolve()
    if root.exists() and (not root.is_dir() or any(root.iterdir())):
        raise InputError(f"--root {root} is not empty: the demo writes only into an empty or new folder")
    if args.store:
        check_store_empty(args.store)
    return root


def command(args: argparse.Namespace) -> int:
    from downbeat.jobs import training
    from downbeat.jobs.cli import main as cli
    from downbeat.jobs.specs import child_configs, load_spec

    spec = load_spec(args.spec)
    reference, challenger = demo_models(spec)
    root = empty_root(args)
    overrides = [*args.overrides, *getattr(args, "overrides_after", []), *demo_settings(root, args.store)]
    conf = getattr(args, "conf_after", None) or args.conf
    # each child: the spec's settings for it, then the command line's --set (it reaches every step)
    configs = child_configs(spec, conf, (), last=overrides)
    built = [*spec.build, *overrides]  # every step runs under the spec's build settings; --set wins
    root.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    common = [*(["--conf", conf] if conf else []), *[x for o in built for x in ("--set", o)]]
    shown = "".join(f"--set {o} " for o in spec.build)  # the spec's settings; the root's are the demo's
    synth = ["--users", str(args.users), "--days", str(args.days)]
    synth += ["--tracks-per-station", str(args.tracks_per_station), "--seed", str(args.seed)]
    steps = [
        ["synth", *synth, "--out", str(root / "raw")],
        ["ingest", "--format", "events", "--input", str(root / "raw")],
        ["build"],
    ]
    for step in steps:
        print(f"\n== downbeat {shown}{' '.join(step)}", flush=True)
        code = cli([*common, *step])
        if code != 0:
            return code
    cfg = load_config(conf, built)
    runs, validation = {}, {}
    winner = "?"
    for child in (reference, challenger):
        sets = " ".join(f"--set {o}" for o in child.overrides)
        print(f"\n== downbeat {sets + ' ' if sets else ''}train --model {child.model}", flush=True)
        result = training.run(configs[child.name], child.model)
        print(f"champion: {result.champion_reason}\n{result.run_id}", flush=True)
        runs[child.name], validation[child.name] = result.run_id, (result.validation, result.validation_se)
        if result.champion_moved:  # the root starts empty: the last model to take the alias holds it
            winner = child.name
    names = (reference.name, challenger.name)
    uris = [f"runs:/{runs[challenger.name]}/model", f"runs:/{runs[reference.name]}/model"]
    print(
        f"\n== downbeat compare --model-uri {uris[0]} --model-uri {uris[1]} --json  (fresh process)",
        flush=True,
    )
    compared = _compare(common, uris)
    references = reference_metrics(cfg, args)
    table = comparison(compared, references, names)
    (root / "comparison.json").write_text(json.dumps(table, indent=2, sort_keys=True) + "\n")
    print(render(table, validation, names))
    alias = f"models:/{cfg.mlflow.registered_model}@champion"
    print(f"champion (the registry gate, on validation figures): {alias} = {winner}")
    where = f"{root} and {args.store}" if args.store else str(root)
    print(f"demo finished in {time.monotonic() - started:.0f} s; everything is under {where}")
    return 0


def comparison(
    compared: dict[str, Any], references: dict[str, dict[str, float]], names: tuple[str, str]
) -> dict[str, Any]:
    """The comparison.json document: every row's metrics and the paired challenger - reference test
    (`names`: the reference, then the challenger; `compared`: `compare`'s document, challenger as a)."""
    reference, challenger = names
    return {
        "models": {
            reference: {k: v["b"] for k, v in compared.items()},
            challenger: {k: v["a"] for k, v in compared.items()},
            **references,
        },
        f"{challenger}_vs_{reference}": {
            k: {f: v[f] for f in ("diff", "diff_low", "diff_high")} for k, v in compared.items()
        },
    }


def render(table: dict[str, Any], validation: dict[str, tuple[float, float]], names: tuple[str, str]) -> str:
    reference, challenger = names
    columns = (*names, *REFERENCES)
    header = f"   {challenger} - {reference} [95% paired]"
    lines = [f"\n{'metric':<28}" + "".join(f"{c:>11}" for c in columns) + header]
    for key, label in ROWS:
        cells = "".join(f"{_fmt(table['models'][c].get(key)):>11}" for c in columns)
        d = table[f"{challenger}_vs_{reference}"].get(key)
        diff = (
            ""
            if d is None or d["diff"] is None
            else f"   {d['diff']:+.4f} [{d['diff_low']:+.4f}, {d['diff_high']:+.4f}]"
        )
        lines.append(f"{label:<28}{cells}{diff}")
    lines.append(
        "validation paired accuracy  "
        + "".join(f"{_fmt(validation[m][0]):>11}" for m in names)
        + f"   (standard errors {validation[reference][1]:.4f}, {validation[challenger][1]:.4f})"
    )
    oracle, challenged = (
        table["models"]["oracle"]["paired_accuracy"],
        table["models"][challenger]["paired_accuracy"],
    )
    share = (challenged - 0.5) / (oracle - 0.5) if oracle > 0.5 else float("nan")
    lines.append(f"{challenger} captures {share:.0%} of the oracle's paired-accuracy margin over chance")
    return "\n".join(lines) + "\n"


def reference_metrics(cfg: Any, args: argparse.Namespace) -> dict[str, dict[str, float]]:
    """Pair metrics of `oracle` (the generator's appeal) and `popularity` on the test pairs."""
    import numpy as np
    import pandas as pd
    from pyspark.sql import functions as F

    from downbeat.jobs.common import snapshots
    from downbeat.models.data import read_frame
    from downbeat.models.evaluation import pair_metrics
    from downbeat.pipelines import schemas as S
    from downbeat.pipelines.lakehouse import Lakehouse
    from downbeat.pipelines.spark import spark_session
    from downbeat.pipelines.synthetic import SynthSettings, appeal, number_of
    from downbeat.pipelines.times import ts_literal

    spark = spark_session(cfg.spark, cfg.delta)
    lakehouse = Lakehouse.from_settings(spark, cfg.lakehouse, cfg.delta)
    pairs = read_frame(snapshots(lakehouse, (Tables.EVAL_PAIRS,))[Tables.EVAL_PAIRS])
    settings = SynthSettings(
        users=args.users, days=args.days, tracks_per_station=args.tracks_per_station, seed=args.seed
    )
    users = np.array([number_of(u) for u in pairs[S.USER_ID]])
    up = np.array([number_of(t) for t in pairs[S.UP_TRACK_ID]])
    down = np.array([number_of(t) for t in pairs[S.DOWN_TRACK_ID]])
    oracle_up, oracle_down = np.empty(len(pairs)), np.empty(len(pairs))
    for user in np.unique(users):
        mine = users == user
        oracle_up[mine] = appeal(int(user), up[mine], settings)
        oracle_down[mine] = appeal(int(user), down[mine], settings)
    cutoff = pairs[S.CUTOFF_TS].iloc[0]
    counts = (
        lakehouse.read(Tables.PLAYS)
        .where(F.col(S.TS) < ts_literal(cutoff.to_pydatetime()))
        .groupBy(S.TRACK_ID)
        .count()
        .collect()
    )
    plays = {row[S.TRACK_ID]: row["count"] for row in counts}
    popular = [
        np.array([plays.get(t, 0) for t in pairs[c]], dtype=float) for c in (S.UP_TRACK_ID, S.DOWN_TRACK_ID)
    ]

    def scored(u: np.ndarray, d: np.ndarray) -> pd.DataFrame:
        return pd.DataFrame({S.USER_ID: pairs[S.USER_ID], "up_score": u, "down_score": d})

    return {
        "oracle": pair_metrics(scored(oracle_up, oracle_down)),
        "popularity": pair_metrics(scored(*popular)),
    }


def _fmt(value: float | None) -> str:
    return "n/a" if value is None or value != value else f"{value:.4f}"


def _compare(common: list[str], uris: list[str]) -> dict[str, Any]:
    command = [sys.executable, "-m", "downbeat.jobs.cli", *common, "compare", "--json"]
    command += [x for uri in uris for x in ("--model-uri", uri)]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        sys.stderr.write(result.stderr)
        raise RuntimeError(f"downbeat compare exited {result.returncode}")
    return dict(json.loads(result.stdout.strip().splitlines()[-1]))


def main(argv: list[str] | None = None) -> int:
    return job_main("demo", __doc__.splitlines()[0] if __doc__ else None, command, add_arguments, argv)


if __name__ == "__main__":
    sys.exit(main())
