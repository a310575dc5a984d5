"""`downbeat compare --model-uri A --model-uri B [--bootstrap N] [--json]`.

Scores two MLflow models on the same versions of gold/eval_pairs and gold/eval_next and prints,
for every metric, both values and the paired difference A - B with a 95% paired-bootstrap
interval: users are resampled, and each resample weighs both models' per-user results alike.
`--json` prints {metric: {"a", "b", "diff", "diff_low", "diff_high"}}.
Also runnable as `spark-submit jobs/compare.py --model-uri A --model-uri B`.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

from downbeat.jobs.common import config_from, job_main, snapshots
from downbeat.jobs.config import Config
from downbeat.models.contract import Tables
from downbeat.models.registry import load_pyfunc
from downbeat.pipelines.errors import InputError
from downbeat.pipelines.lakehouse import Lakehouse

if TYPE_CHECKING:
    from downbeat.models.data import TableSnapshot
    from downbeat.models.evaluation import Difference


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model-uri", action="append", required=True, metavar="URI", help="an MLflow model URI; give two"
    )
    parser.add_argument(
        "--bootstrap", type=int, default=1000, metavar="N", help="resamples of users (default 1000)"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the resampling (default 0)")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a table")


def run(
    cfg: Config, model_uris: Sequence[str], *, bootstrap: int = 1000, seed: int = 0
) -> tuple[dict[str, Difference], dict[str, TableSnapshot]]:
    """Both models' figures on the same evaluation rows and their paired differences A - B (keyed by
    metric), with the table snapshots they were scored on."""
    from downbeat.models.evaluation import EVAL_TABLES, MAY_BE_EMPTY, compare, eval_frames, evaluate  # torch

    if len(model_uris) != 2:
        raise InputError(f"--model-uri must be given exactly twice (A and B), got {len(model_uris)}")
    if bootstrap < 1:
        raise InputError(f"--bootstrap must be at least 1, got {bootstrap}")
    tables = snapshots(Lakehouse(None, cfg.lakehouse.root), EVAL_TABLES, MAY_BE_EMPTY)
    models = [
        load_pyfunc(uri, cfg.mlflow.tracking_uri, tables[Tables.TRACKS], cfg.lakehouse.root)
        for uri in model_uris
    ]
    pairs, next_rows = eval_frames(tables)
    terms = [
        evaluate(
            m.predict, pairs, next_rows, tables[Tables.TRACKS].rows, chunk=cfg.train.eval_batch_size
        ).terms
        for m in models
    ]
    return compare(terms[0], terms[1], samples=bootstrap, seed=seed), tables


def command(args: argparse.Namespace) -> int:
    from downbeat.models.evaluation import SHOWN

    result, tables = run(config_from(args), args.model_uri, bootstrap=args.bootstrap, seed=args.seed)
    if args.json:
        print(
            json.dumps(
                {
                    k: {f: (None if v != v else v) for f, v in dataclasses.asdict(d).items()}
                    for k, d in result.items()
                },
                sort_keys=True,
            )
        )
        return 0
    a, b = args.model_uri
    print(
        f"A = {a}\nB = {b}\non {Tables.EVAL_PAIRS} v{tables[Tables.EVAL_PAIRS].version} and "
        f"{Tables.EVAL_NEXT} v{tables[Tables.EVAL_NEXT].version}; "
        f"95% paired bootstrap over users ({args.bootstrap} resamples)"
    )
    print(f"  {'metric':<24}{'A':>9}{'B':>9}{'A - B':>9}  interval")
    for name in SHOWN:
        d = result[name]
        print(f"  {name:<24}{d.a:>9.4f}{d.b:>9.4f}{d.diff:>+9.4f}  [{d.diff_low:+.4f}, {d.diff_high:+.4f}]")
    return 0


def main(argv: list[str] | None = None) -> int:
    return job_main("compare", __doc__.splitlines()[0] if __doc__ else None, command, add_arguments, argv)


if __name__ == "__main__":
    sys.exit(main())
