"""Benchmark (prints figures, never fails on time): next-item models on a MovieLens ratings file,
leave-one-out, full ranking over the catalog with each user's rated films excluded, ties against the
target; RecTools' SASRec beside them on exactly the same training rows and targets.

    python tests/benchmarks/bench_ml1m.py --ratings ../shared/datasets/movielens_1m_part/ratings.dat \\
        --json ml1m.json [--rectools .venv-rectools/bin/python]       # `make rectools-venv` makes it
    python tests/benchmarks/bench_ml1m.py --ratings ... --models popularity,sasrec --max-epochs 2   # smoke

It ingests the file (`--format movielens`, every rating a positive as in the published ML-1M
figures: sources.movielens.up_min 1), builds under `split.protocol: leave_one_out`, and trains
popularity, sasrec (its default loss: 1,000 sampled negatives), sasrec with the full softmax,
gsasrec (gBCE, t 0.75, 256 negatives: the gSASRec paper's ML-1M setting; Adam's beta2 0.98) and
bert4rec, each stopping on validation NDCG@10 (train.patience epochs without a better one, at most
--max-epochs). Every model is scored by the same code (models/evaluation.py) on gold/eval_next:
NDCG@10 and HR@10 with 95% intervals from 1,000 resamples of users, epochs, seconds and the
learning curve.

With --rectools, RecTools (its own virtual environment: its dependencies are not downbeat's) trains
its SASRec with softmax and with gBCE on the training rows downbeat trained on (gold/sequences),
one epoch at a time under the same epoch budget and stopping rule, and its full-catalog scores are
ranked by downbeat's metric code on the same targets (tests/benchmarks/rectools_peer.py). Each
downbeat model scored beside RecTools' SASRec of the nearest loss (in this run, or in an earlier run's
JSON on the same lakehouse given with --with) is compared paired: the NDCG@10 difference over the
same users, with its 95% interval.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from downbeat.models import metrics as M  # noqa: E402

MODELS = {  # name -> (architecture, its settings beyond the shared ones)
    "popularity": ("popularity", []),
    "sasrec": ("sasrec", []),
    "sasrec_full_softmax": ("sasrec", ["model.sasrec.softmax=full"]),
    # gBCE sits on a plateau (every item scored alike) before it ranks anything; Adam's beta2 0.98
    # (kang205's SASRec, RecTools) leaves it by epoch 8 where torch's 0.999 had not by epoch 10: a
    # choice made on validation NDCG@10 (the reference, gSASRec-pytorch, waits 200 epochs instead).
    "gsasrec": (
        "gsasrec",
        ["model.gsasrec.sampled_negatives=256", "model.gsasrec.gbce_t=0.75", "optim.adam_beta2=0.98"],
    ),
    "bert4rec": ("bert4rec", []),
}
# downbeat's model and RecTools' SASRec of the nearest loss (RecTools' softmax is the full one),
# compared paired when both were scored
PEERS = (
    ("sasrec_full_softmax", "rectools_sasrec_softmax"),
    ("sasrec", "rectools_sasrec_softmax"),
    ("gsasrec", "rectools_sasrec_gbce"),
)
K = 10
RESAMPLES = 1000


def figures(users: np.ndarray, ranks: np.ndarray) -> dict[str, Any]:
    """NDCG@10 and HR@10 of one target per user, each with a 95% interval over resampled users, and
    each user's rank (what a paired comparison with another model reads)."""
    order = np.argsort(users, kind="stable")
    users, ranks = users[order], ranks[order]
    gains, hits = gains_of(ranks), (ranks <= K).astype(np.float64)
    weights = M.bootstrap_weights(len(ranks), RESAMPLES, seed=0)
    out: dict[str, Any] = {"users": len(ranks)}
    for name, values in ((f"ndcg@{K}", gains), (f"hr@{K}", hits)):
        draws = (weights @ values) / weights.sum(axis=1)
        out[name] = float(values.mean())
        out[f"{name}_ci"] = list(M.percentile_interval(draws))
    out["per_user"] = {"user_ids": [str(u) for u in users], "ranks": [int(r) for r in ranks]}
    return out


def gains_of(ranks: np.ndarray) -> np.ndarray:
    return np.where(ranks <= K, 1.0 / np.log2(ranks + 1.0), 0.0)


def paired(result: dict[str, Any]) -> dict[str, Any]:
    """Each downbeat model against RecTools' nearest model, on the same users: the difference of their
    NDCG@10 with a 95% interval over resampled users (the same resamples for both)."""
    entries = {**result["downbeat"], **result["rectools"]}
    out: dict[str, Any] = {}
    for ours, peer in PEERS:
        if "per_user" not in entries.get(ours, {}) or "per_user" not in entries.get(peer, {}):
            continue
        a, b = entries[ours]["per_user"], entries[peer]["per_user"]
        if a["user_ids"] != b["user_ids"]:
            raise SystemExit(f"{ours} and {peer} were scored on different users: not the same build")
        diff = gains_of(np.asarray(a["ranks"])) - gains_of(np.asarray(b["ranks"]))
        weights = M.bootstrap_weights(len(diff), RESAMPLES, seed=0)
        low, high = M.percentile_interval((weights @ diff) / weights.sum(axis=1))
        out[f"{ours} - {peer}"] = {"ndcg@10": float(diff.mean()), "ndcg@10_ci": [low, high]}
        print(f"{ours} - {peer}: NDCG@10 {diff.mean():+.4f} [{low:+.4f}, {high:+.4f}] (paired)", flush=True)
    return out


def joined(result: dict[str, Any], earlier: list[str]) -> None:
    """Models an earlier run of this benchmark (same --work lakehouse) scored, for the paired
    comparisons; this run's own entries win."""
    for path in earlier:
        other = json.loads(Path(path).read_text())
        for side in ("downbeat", "rectools"):
            for name, entry in other.get(side, {}).items():
                result[side].setdefault(name, entry | {"from": str(path)})


def settings(work: Path, args: argparse.Namespace) -> list[str]:
    return [
        f"lakehouse.root={work / 'lh'}",
        f"mlflow.tracking_uri=sqlite:///{work / 'mlruns.db'}",
        f"mlflow.artifact_root={work / 'artifacts'}",
        f"train.checkpoint_dir={work / 'checkpoints'}",
        "spark.log_level=ERROR",
        "split.protocol=leave_one_out",
        "sources.movielens.up_min=1",  # every rating is an interaction (the published ML-1M protocol)
        "sources.movielens.down_max=0",
        "sequences.max_length=200",
        "model.max_length=200",
        f"train.max_epochs={args.max_epochs}",
        f"train.patience={args.patience}",
        f"train.batch_size={args.batch_size}",
        *args.set,
    ]


def curve(tracking_uri: str, run_id: str) -> list[dict[str, float]]:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri)
    series: dict[int, dict[str, float]] = {}
    for metric in ("train_loss", "val_ndcg_at_10_pos", "train_seconds"):
        for m in client.get_metric_history(run_id, metric):
            series.setdefault(m.step, {"epoch": float(m.step + 1)})[metric] = m.value
    return [series[e] for e in sorted(series)]


def train_models(work: Path, args: argparse.Namespace, result: dict[str, Any]) -> None:
    """Build the lakehouse and train every model; each is scored on gold/eval_next."""
    import mlflow

    from downbeat.jobs import build, ingest, training
    from downbeat.jobs.config import load_config
    from downbeat.models.data import TableSnapshot, read_frame
    from downbeat.models.evaluation import evaluate
    from downbeat.pipelines.lakehouse import Lakehouse
    from downbeat.pipelines.spark import spark_session

    base = settings(work, args)
    cfg = load_config(None, base)
    spark = spark_session(cfg.spark, cfg.delta)
    lakehouse = Lakehouse(None, cfg.lakehouse.root)
    started = time.perf_counter()
    if args.reuse_build and lakehouse.exists("gold/eval_next"):
        print(f"reusing the lakehouse built in {work / 'lh'}", flush=True)
    else:
        ingest.run(spark, cfg, "movielens", [args.ratings])
        build.run(spark, cfg)
    result["build_seconds"] = time.perf_counter() - started

    def snapshot(table: str) -> TableSnapshot:
        version, files, rows = lakehouse.snapshot(table)
        return TableSnapshot(table, lakehouse.uri(table), version, tuple(files), rows or 0)

    eval_next, tracks = read_frame(snapshot("gold/eval_next")), snapshot("gold/tracks")
    no_pairs = read_frame(snapshot("gold/eval_pairs"))
    result["items"], result["eval_users"] = tracks.rows, len(eval_next)
    result["train_rows"] = snapshot("gold/sequences").rows
    print(
        f"built: {tracks.rows} items, {len(eval_next)} test users ({result['build_seconds']:.0f} s)",
        flush=True,
    )
    for name in args.models:
        architecture, more = MODELS[name]
        started = time.perf_counter()
        outcome = training.run(load_config(None, [*base, *more]), architecture)
        seconds = time.perf_counter() - started
        model = mlflow.pyfunc.load_model(f"runs:/{outcome.run_id}/model")
        scored = evaluate(model.predict, no_pairs, eval_next, tracks.rows)
        ranks = scored.next_ranks
        entry = figures(ranks["user_id"].to_numpy(), ranks["rank"].to_numpy())
        run = mlflow.tracking.MlflowClient(cfg.mlflow.tracking_uri).get_run(outcome.run_id)
        entry |= {
            "architecture": architecture,
            "settings": more,
            "epochs": int(run.data.metrics.get("epochs_run", 0)),
            "best_epoch": int(run.data.metrics.get("best_epoch", 0)) + 1,
            "validation_ndcg@10": outcome.validation,
            "seconds": seconds,
            "curve": curve(cfg.mlflow.tracking_uri, outcome.run_id),
        }
        result["downbeat"][name] = entry
        print(f"{line(name, entry)}  {seconds:.0f} s", flush=True)
        save(args, result)  # after every model: an interrupted run keeps what it measured
    if args.rectools:
        export_for_peer(lakehouse, snapshot, work / "peer")
    spark.stop()


def export_for_peer(lakehouse: Any, snapshot: Any, folder: Path) -> None:
    """What RecTools trains and is scored on, from the same gold tables: the training rows
    (gold/sequences, one item per row position, in order), and the validation and test targets
    with their histories and exclusions (gold/validation_next, gold/eval_next)."""
    from downbeat.models.data import read_frame

    folder.mkdir(parents=True, exist_ok=True)
    sequences = read_frame(snapshot("gold/sequences"))
    rows = [
        (user, int(item), position)
        for user, items in zip(sequences["user_id"], sequences["track_ids"], strict=True)
        for position, item in enumerate(items)
    ]
    pd.DataFrame(rows, columns=["user_id", "item_id", "position"]).to_parquet(folder / "train.parquet")
    for table, name in (("gold/validation_next", "validation"), ("gold/eval_next", "test")):
        frame = read_frame(snapshot(table))[
            ["user_id", "track_idx", "history_track_ids", "exclude_track_ids"]
        ]
        frame.to_parquet(folder / f"{name}.parquet")
    (folder / "items.json").write_text(json.dumps({"items": snapshot("gold/tracks").rows}))


def peer_code(work: Path) -> Path:
    """A folder whose downbeat/models is this checkout's models/ (numpy-only metrics is all the peer
    imports), for PYTHONPATH in the RecTools environment, where downbeat is not installed."""
    package = work / "peer_code" / "downbeat"
    package.mkdir(parents=True, exist_ok=True)
    if not (package / "models").exists():
        (package / "models").symlink_to(ROOT / "models", target_is_directory=True)
    return package.parent


def run_peer(work: Path, args: argparse.Namespace, result: dict[str, Any]) -> None:
    """RecTools' SASRec (softmax, then gBCE with 256 negatives and t 0.75) in its own environment."""
    for name, loss in (("rectools_sasrec_softmax", "softmax"), ("rectools_sasrec_gbce", "gBCE")):
        if loss not in args.peer_losses:
            continue
        out = work / f"{name}.json"
        command = [
            args.rectools,
            str(ROOT / "tests" / "benchmarks" / "rectools_peer.py"),
            "--data",
            str(work / "peer"),
            "--loss",
            loss,
            "--max-epochs",
            str(args.max_epochs),
            "--patience",
            str(args.patience),
            "--batch-size",
            str(args.batch_size),
            "--out",
            str(out),
        ]
        started = time.perf_counter()
        subprocess.run(command, check=True, env={"PYTHONPATH": str(peer_code(work)), "PATH": "/usr/bin:/bin"})
        peer = json.loads(out.read_text())
        entry = figures(np.asarray(peer["users"]), np.asarray(peer["ranks"]))
        entry |= {k: peer[k] for k in ("epochs", "best_epoch", "curve", "settings")}
        entry["seconds"] = time.perf_counter() - started
        result["rectools"][name] = entry
        print(line(name, entry), flush=True)
        save(args, result)


def save(args: argparse.Namespace, result: dict[str, Any]) -> None:
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2, sort_keys=True))


def line(name: str, entry: dict[str, Any]) -> str:
    """One model's figures on one line."""
    figures = "  ".join(
        f"{m} {entry[m]:.4f} [{entry[m + '_ci'][0]:.4f}, {entry[m + '_ci'][1]:.4f}]"
        for m in ("ndcg@10", "hr@10")
    )
    return f"{name:<24} {figures}  epochs {entry['epochs']} (best {entry['best_epoch']})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--ratings", required=True, help="a MovieLens ratings file (u.data, ratings.dat, ratings.csv)"
    )
    parser.add_argument("--json", metavar="PATH", help="write every figure here")
    parser.add_argument("--models", default=",".join(MODELS), help=f"comma-separated, of {', '.join(MODELS)}")
    parser.add_argument("--max-epochs", type=int, default=200)
    parser.add_argument("--patience", type=int, default=20, help="epochs without a better validation NDCG@10")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--rectools", metavar="PYTHON", help="the RecTools environment's python")
    parser.add_argument(
        "--peer-losses", default="softmax,gBCE", help="RecTools' SASRec losses to train (softmax, gBCE)"
    )
    parser.add_argument(
        "--work", metavar="DIR", help="keep the lakehouse and runs here (default: a temp folder)"
    )
    parser.add_argument(
        "--reuse-build",
        action="store_true",
        help="skip ingest and build when --work already holds a built lakehouse (the same --ratings)",
    )
    parser.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="more config for every model"
    )
    parser.add_argument(
        "--with",
        dest="earlier",
        action="append",
        default=[],
        metavar="JSON",
        help="an earlier run's JSON on the same --work lakehouse: its models join the paired comparisons",
    )
    args = parser.parse_args()
    args.models = [m for m in args.models.split(",") if m]
    args.peer_losses = [m for m in args.peer_losses.split(",") if m]
    unknown = [m for m in args.models if m not in MODELS]
    if unknown:
        parser.error(f"unknown model(s) {', '.join(unknown)}")
    result: dict[str, Any] = {
        "date": f"{dt.date.today()}",
        "ratings": str(Path(args.ratings).resolve()),
        "protocol": "leave_one_out; full ranking, rated items excluded, ties against the target",
        "max_epochs": args.max_epochs,
        "patience": args.patience,
        "batch_size": args.batch_size,
        "downbeat": {},
        "rectools": {},
    }
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(args.work) if args.work else Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        train_models(work, args, result)
        if args.rectools:
            run_peer(work, args, result)
    joined(result, args.earlier)
    result["paired"] = paired(result)
    save(args, result)


if __name__ == "__main__":
    main()
