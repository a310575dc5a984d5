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
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from downbeat.jobs.common import config_from, job_main, snapshots
from downbeat.jobs.config import Config
from downbeat.models.contract import Tables
from downbeat.models.registry import load_pyfunc
from downbeat.pipelines.errors import InputError
from downbeat.pipelines.lakehouse import Lakehouse

if TYPE_CHECKING:
    import pandas as pd

    from downbeat.models.data import TableSnapshot

log = logging.getLogger("downbeat.evaluate")


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


@dataclass(frozen=True)
class Evaluation:
    """A model's figures on the current evaluation tables (`metrics`, with the tables' versions),
    one row per eval pair with its score (`predictions`), and the snapshots it read (`tables`)."""

    metrics: dict[str, float]
    predictions: pd.DataFrame
    tables: dict[str, TableSnapshot]


def run(cfg: Config, model_uri: str, *, bootstrap: int = 0) -> Evaluation:
    """Load `model_uri` as a pyfunc and score it on the current gold/eval_pairs and gold/eval_next."""
    from downbeat.models.evaluation import EVAL_TABLES, MAY_BE_EMPTY, eval_frames, evaluate  # torch

    if bootstrap < 0:
        raise InputError(f"--bootstrap must be 0 or more, got {bootstrap}")
    tables = snapshots(Lakehouse(None, cfg.lakehouse.root), EVAL_TABLES, MAY_BE_EMPTY)
    model = load_pyfunc(model_uri, cfg.mlflow.tracking_uri, tables[Tables.TRACKS], cfg.lakehouse.root)
    pairs, next_rows = eval_frames(tables)
    result = evaluate(
        model.predict,
        pairs,
        next_rows,
        tables[Tables.TRACKS].rows,
        chunk=cfg.train.eval_batch_size,
        bootstrap=bootstrap,
    )
    metrics = dict(result.metrics)
    metrics["eval_pairs_version"] = float(tables[Tables.EVAL_PAIRS].version)
    metrics["eval_next_version"] = float(tables[Tables.EVAL_NEXT].version)
    return Evaluation(metrics, result.predictions, tables)


def command(args: argparse.Namespace) -> int:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from downbeat.models.evaluation import SHOWN

    cfg = config_from(args)
    out = Path(args.predictions_out) if args.predictions_out else None
    if out is not None and not out.parent.is_dir():
        raise InputError(f"--predictions-out {out}: folder {out.parent} does not exist")
    if out is not None and out.is_dir():
        raise InputError(f"--predictions-out {out} is a folder: name a Parquet file")
    done = run(cfg, args.model_uri, bootstrap=args.bootstrap)
    if out is not None:
        pq.write_table(pa.Table.from_pandas(done.predictions, preserve_index=False), out)
        log.info("wrote %d pair predictions to %s", len(done.predictions), out)
    metrics, tables = done.metrics, done.tables
    if args.json:
        print(json.dumps({k: (None if v != v else v) for k, v in metrics.items()}, sort_keys=True))
        return 0
    print(
        f"model {args.model_uri} on {Tables.EVAL_PAIRS} v{tables[Tables.EVAL_PAIRS].version} "
        f"({int(metrics['pairs'])} pairs, {int(metrics['pair_users'])} users) and {Tables.EVAL_NEXT} "
        f"v{tables[Tables.EVAL_NEXT].version} ({int(metrics['next_users'])} users)"
    )
    for name in SHOWN:
        value = metrics[name]
        interval = ""
        if f"{name}_ci_low" in metrics:
            interval = f"  [{metrics[name + '_ci_low']:.4f}, {metrics[name + '_ci_high']:.4f}]"
        print(f"  {name:<16} {value:.4f}{interval}")
    return 0


def main(argv: list[str] | None = None) -> int:
    return job_main("evaluate", __doc__.splitlines()[0] if __doc__ else None, command, add_arguments, argv)


if __name__ == "__main__":
    sys.exit(main())
