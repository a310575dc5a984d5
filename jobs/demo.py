"""`downbeat demo [--root DIR] [--users N] [--days D]`: the whole product on synthetic data.

synth -> ingest -> build -> train `baseline` and `hybrid` -> evaluate both (each in a fresh
process, from the registry) -> a comparison table. Everything (raw log, lakehouse, MLflow store,
checkpoints) goes under --root, which must be empty or absent; the registry ends with a champion.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

from jobs.common import job_main
from jobs.config import load_config
from pipelines.errors import InputError

MODELS = ("baseline", "hybrid")
ROWS = (
    ("paired_accuracy", "paired accuracy"),
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
    parser.add_argument("--users", type=int, default=800, help="synthetic listeners (default 800)")
    parser.add_argument("--days", type=int, default=60, help="days of listening (default 60)")


def demo_settings(root: Path) -> list[str]:
    """The overrides that put every output of the demo under `root`."""
    return [
        f"lakehouse.root={root / 'lakehouse'}",
        f"mlflow.tracking_uri=sqlite:///{root / 'mlruns.db'}",
        f"mlflow.artifact_root={root / 'mlartifacts'}",
        f"train.checkpoint_dir={root / 'checkpoints'}",
    ]


def command(args: argparse.Namespace) -> int:
    from jobs import train
    from jobs.cli import main as cli

    root = Path(args.root).resolve()
    if root.exists() and (not root.is_dir() or any(root.iterdir())):
        raise InputError(f"--root {root} is not empty: the demo writes only into an empty or new folder")
    root.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    overrides = [*args.overrides, *getattr(args, "overrides_after", []), *demo_settings(root)]
    conf = getattr(args, "conf_after", None) or args.conf
    common = [*(["--conf", conf] if conf else []), *[x for o in overrides for x in ("--set", o)]]
    steps = [
        ["synth", "--users", str(args.users), "--days", str(args.days), "--out", str(root / "raw")],
        ["ingest", "--format", "events", "--input", str(root / "raw")],
        ["build"],
    ]
    for step in steps:
        print(f"\n== downbeat {' '.join(step)}", flush=True)
        code = cli([*common, *step])
        if code != 0:
            return code
    cfg = load_config(conf, overrides)
    runs = {}
    winner = "?"
    for name in MODELS:
        print(f"\n== downbeat train --model {name}", flush=True)
        result = train.run(cfg, name)
        print(f"champion: {result.champion_reason}\n{result.run_id}", flush=True)
        runs[name] = result.run_id
        if result.champion_moved:  # the root starts empty: the last model to take the alias holds it
            winner = name
    metrics = {}
    for name, run_id in runs.items():
        print(f"\n== downbeat evaluate --model-uri runs:/{run_id}/model --json  (fresh process)", flush=True)
        metrics[name] = _evaluate(common, f"runs:/{run_id}/model")
    print(f"\n{'metric':<28}{'baseline':>10}{'hybrid':>10}")
    for key, label in ROWS:
        a, b = metrics["baseline"].get(key), metrics["hybrid"].get(key)
        print(f"{label:<28}{_fmt(a):>10}{_fmt(b):>10}")
    pairs, users = int(metrics["hybrid"]["pairs"]), int(metrics["hybrid"]["next_users"])
    print(f"\n{pairs} eval pairs, {users} eval users; champion: models:/downbeat@champion = {winner}")
    print(f"demo finished in {time.monotonic() - started:.0f} s; everything is under {root}")
    return 0


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"


def _evaluate(common: list[str], uri: str) -> dict[str, float]:
    command = [sys.executable, "-m", "jobs.cli", *common, "evaluate", "--model-uri", uri, "--json"]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        sys.stderr.write(result.stderr)
        raise RuntimeError(f"downbeat evaluate --model-uri {uri} exited {result.returncode}")
    return dict(json.loads(result.stdout.strip().splitlines()[-1]))


def main(argv: list[str] | None = None) -> int:
    return job_main("demo", __doc__.splitlines()[0] if __doc__ else None, command, add_arguments, argv)


if __name__ == "__main__":
    sys.exit(main())
