"""`downbeat evaluate --model-uri URI [--json] [--predictions-out PATH] [--bootstrap N]`.

Loads any MLflow model URI (e.g. models:/downbeat@champion, runs:/<id>/model) as a pyfunc and
scores the current gold/eval_pairs and gold/eval_next: paired accuracy, mean per-user AUC, HR and
NDCG@10 on positive and negative next-play targets, MAP@10, MRR@10 of skipped targets, coverage.
Also runnable as `spark-submit jobs/evaluate.py --model-uri URI`.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any

from jobs.common import config_from, job_main, snapshots
from pipelines.errors import InputError
from pipelines.lakehouse import Lakehouse

EVAL_TABLES = ("gold/eval_pairs", "gold/eval_next", "gold/tracks")
MAY_BE_EMPTY = ("gold/eval_pairs",)  # leave-one-out has one target per user: no pairs

log = logging.getLogger("downbeat.evaluate")
SHOWN = (
    "paired_accuracy",
    "paired_accuracy_pooled",
    "auc",
    "hr@10_pos",
    "hr@10_neg",
    "hr@10_diff",
    "ndcg@10_pos",
    "ndcg@10_neg",
    "ndcg@10_diff",
    "map@10",
    "skip_mrr@10",
    "coverage",
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model-uri", required=True, metavar="URI", help="any MLflow model URI")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    parser.add_argument(
        "--predictions-out", metavar="PATH", help="write one Parquet row per eval pair with scores"
    )
    parser.add_argument(
        "--bootstrap",
        type=int,
        default=0,
        metavar="N",
        help="95%% intervals from N resamples of users (default: none)",
    )


def command(args: argparse.Namespace) -> int:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from models.evaluation import evaluate

    cfg = config_from(args)
    if args.bootstrap < 0:
        raise InputError(f"--bootstrap must be 0 or more, got {args.bootstrap}")
    out = Path(args.predictions_out) if args.predictions_out else None
    if out is not None and not out.parent.is_dir():
        raise InputError(f"--predictions-out {out}: folder {out.parent} does not exist")
    if out is not None and out.is_dir():
        raise InputError(f"--predictions-out {out} is a folder: name a Parquet file")
    tables = snapshots(Lakehouse(None, cfg.lakehouse.root), EVAL_TABLES, MAY_BE_EMPTY)
    model = load_pyfunc(args.model_uri, cfg.mlflow.tracking_uri, tables["gold/tracks"], cfg.lakehouse.root)
    pairs, next_rows = eval_frames(tables)
    result = evaluate(
        model.predict,
        pairs,
        next_rows,
        tables["gold/tracks"].rows,
        chunk=cfg.train.eval_batch_size,
        bootstrap=args.bootstrap,
    )
    if out is not None:
        pq.write_table(pa.Table.from_pandas(result.predictions, preserve_index=False), out)
        log.info("wrote %d pair predictions to %s", len(result.predictions), out)
    metrics = dict(result.metrics)
    metrics["eval_pairs_version"] = float(tables["gold/eval_pairs"].version)
    metrics["eval_next_version"] = float(tables["gold/eval_next"].version)
    if args.json:
        print(json.dumps({k: (None if v != v else v) for k, v in metrics.items()}, sort_keys=True))
        return 0
    print(
        f"model {args.model_uri} on gold/eval_pairs v{tables['gold/eval_pairs'].version} "
        f"({int(metrics['pairs'])} pairs, {int(metrics['pair_users'])} users) and gold/eval_next "
        f"v{tables['gold/eval_next'].version} ({int(metrics['next_users'])} users)"
    )
    for name in SHOWN:
        value = metrics[name]
        interval = ""
        if f"{name}_ci_low" in metrics:
            interval = f"  [{metrics[name + '_ci_low']:.4f}, {metrics[name + '_ci_high']:.4f}]"
        print(f"  {name:<16} {value:.4f}{interval}")
    return 0


def load_pyfunc(uri: str, tracking_uri: str, tracks: Any, root: str) -> Any:
    """The MLflow model at `uri`; bad input (exit 2) when it cannot load or was trained on another
    catalog than `tracks` (the gold/tracks snapshot): another size, or (for models that record it)
    other ids for the same tracks, as a rebuild after new plays can give."""
    import mlflow
    from mlflow.exceptions import MlflowException

    mlflow.set_tracking_uri(tracking_uri)
    try:
        model = mlflow.pyfunc.load_model(uri)
    except (MlflowException, OSError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InputError(f"--model-uri {uri}: {first}") from None
    check_catalog(uri, model.metadata.metadata or {}, tracks, root)
    return model


def check_catalog(uri: str, metadata: dict[str, Any], tracks: Any, root: str) -> None:
    """Bad input (exit 2) unless the model's recorded catalog is the gold/tracks snapshot's."""
    from models.serving import tracks_fingerprint

    trained_on = metadata.get("n_tracks")
    if trained_on is not None and int(trained_on) != tracks.rows:
        raise InputError(
            f"--model-uri {uri} was trained on {trained_on} tracks but gold/tracks version "
            f"{tracks.version} under {root} has {tracks.rows}: not the same catalog"
        )
    recorded = metadata.get("catalog")
    if recorded is None:
        return
    found = tracks_fingerprint(tracks)
    if found != recorded:
        raise InputError(
            f"--model-uri {uri} was trained on catalog {recorded} (gold/tracks version "
            f"{metadata.get('tracks_version', '?')}) but gold/tracks version {tracks.version} under {root} "
            f"gives its {tracks.rows} tracks other ids (catalog {found}): not the same "
            "catalog; retrain on it"
        )


def eval_frames(tables: dict[str, Any]) -> tuple[Any, Any]:
    """gold/eval_pairs and gold/eval_next rows of these snapshots, as pandas frames."""
    from models.data import read_frame

    return read_frame(tables["gold/eval_pairs"]), read_frame(tables["gold/eval_next"])


def main(argv: list[str] | None = None) -> int:
    return job_main("evaluate", __doc__.splitlines()[0] if __doc__ else None, command, add_arguments, argv)


if __name__ == "__main__":
    sys.exit(main())
