"""`downbeat demo [--root DIR] [--store URI] [--users N] [--days D]`: the whole product on synthetic data.

synth -> ingest -> build -> train `baseline` and `hybrid` -> `compare` the two registered models
(in a fresh process, from the registry) -> a comparison table with two reference scorers on the
same pairs: `oracle` (the generator's true appeal) and `popularity` (pre-cut-off play counts).
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
from downbeat.jobs.config import load_config
from downbeat.models.contract import Tables
from downbeat.pipelines.errors import InputError

MODELS = ("baseline", "hybrid")
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


def command(args: argparse.Namespace) -> int:
    from downbeat.jobs import training
    from downbeat.jobs.cli import main as cli

    root = Path(args.root).resolve()
    if root.exists() and (not root.is_dir() or any(root.iterdir())):
        raise InputError(f"--root {root} is not empty: the demo writes only into an empty or new folder")
    if args.store:
        check_store_empty(args.store)
    root.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    overrides = [*args.overrides, *getattr(args, "overrides_after", []), *demo_settings(root, args.store)]
    conf = getattr(args, "conf_after", None) or args.conf
    common = [*(["--conf", conf] if conf else []), *[x for o in overrides for x in ("--set", o)]]
    synth = ["--users", str(args.users), "--days", str(args.days)]
    synth += ["--tracks-per-station", str(args.tracks_per_station), "--seed", str(args.seed)]
    steps = [
        ["synth", *synth, "--out", str(root / "raw")],
        ["ingest", "--format", "events", "--input", str(root / "raw")],
        ["build"],
    ]
    for step in steps:
        print(f"\n== downbeat {' '.join(step)}", flush=True)
        code = cli([*common, *step])
        if code != 0:
            return code
    cfg = load_config(conf, overrides)
    runs, validation = {}, {}
    winner = "?"
    for name in MODELS:
        print(f"\n== downbeat train --model {name}", flush=True)
        result = training.run(cfg, name)
        print(f"champion: {result.champion_reason}\n{result.run_id}", flush=True)
        runs[name], validation[name] = result.run_id, (result.validation, result.validation_se)
        if result.champion_moved:  # the root starts empty: the last model to take the alias holds it
            winner = name
    uris = [f"runs:/{runs['hybrid']}/model", f"runs:/{runs['baseline']}/model"]
    print(
        f"\n== downbeat compare --model-uri {uris[0]} --model-uri {uris[1]} --json  (fresh process)",
        flush=True,
    )
    compared = _compare(common, uris)
    references = reference_metrics(cfg, args)
    table = comparison(compared, references)
    (root / "comparison.json").write_text(json.dumps(table, indent=2, sort_keys=True) + "\n")
    print(render(table, validation))
    alias = f"models:/{cfg.mlflow.registered_model}@champion"
    print(f"champion (the registry gate, on validation figures): {alias} = {winner}")
    where = f"{root} and {args.store}" if args.store else str(root)
    print(f"demo finished in {time.monotonic() - started:.0f} s; everything is under {where}")
    return 0


def comparison(compared: dict[str, Any], references: dict[str, dict[str, float]]) -> dict[str, Any]:
    """The comparison.json document: every row's metrics and the paired hybrid - baseline test."""
    return {
        "models": {
            "baseline": {k: v["b"] for k, v in compared.items()},
            "hybrid": {k: v["a"] for k, v in compared.items()},
            **references,
        },
        "hybrid_vs_baseline": {
            k: {f: v[f] for f in ("diff", "diff_low", "diff_high")} for k, v in compared.items()
        },
    }


def render(table: dict[str, Any], validation: dict[str, tuple[float, float]]) -> str:
    columns = (*MODELS, *REFERENCES)
    lines = [f"\n{'metric':<28}" + "".join(f"{c:>11}" for c in columns) + "   hybrid - baseline [95% paired]"]
    for key, label in ROWS:
        cells = "".join(f"{_fmt(table['models'][c].get(key)):>11}" for c in columns)
        d = table["hybrid_vs_baseline"].get(key)
        diff = (
            ""
            if d is None or d["diff"] is None
            else f"   {d['diff']:+.4f} [{d['diff_low']:+.4f}, {d['diff_high']:+.4f}]"
        )
        lines.append(f"{label:<28}{cells}{diff}")
    lines.append(
        "validation paired accuracy  "
        + "".join(f"{_fmt(validation[m][0]):>11}" for m in MODELS)
        + f"   (standard errors {validation['baseline'][1]:.4f}, {validation['hybrid'][1]:.4f})"
    )
    oracle, hybrid = (
        table["models"]["oracle"]["paired_accuracy"],
        table["models"]["hybrid"]["paired_accuracy"],
    )
    share = (hybrid - 0.5) / (oracle - 0.5) if oracle > 0.5 else float("nan")
    lines.append(f"hybrid captures {share:.0%} of the oracle's paired-accuracy margin over chance")
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
