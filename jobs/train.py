"""`downbeat train --model {baseline,hybrid,sasrec} [--processes N] [--resume CHECKPOINT]`.

Reads the current snapshots of the gold tables, trains (N > 1: N DDP processes through Spark's
TorchDistributor), evaluates on gold/eval_pairs and gold/eval_next, logs everything to one MLflow
run, registers the model (alias `candidate`; `champion` when the gate of config section `registry`
lets it) and prints the run id as the last line of standard output.
Also runnable as `spark-submit jobs/train.py --model hybrid`.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from downbeat.jobs.common import add_json_option, config_from, job_main, print_summary
from downbeat.jobs.training import run
from downbeat.models.settings import MODEL_NAMES


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, choices=MODEL_NAMES, help="architecture to train")
    parser.add_argument(
        "--processes", type=int, default=None, metavar="N", help="DDP processes (default: train.processes)"
    )
    parser.add_argument(
        "--resume",
        default=None,
        metavar="CHECKPOINT",
        help="continue from a checkpoint file (or the newest in a run's checkpoint folder), in the same run",
    )
    add_json_option(parser)


def command(args: argparse.Namespace) -> int:
    cfg = config_from(args, architecture=args.model)
    started = time.monotonic()
    result = run(cfg, args.model, processes=args.processes, resume=args.resume)
    se = result.validation_se
    print(f"validation {result.selected_on}: {result.validation:.4f} (standard error {se:.4f})")
    print(f"test metrics: {json.dumps({k: round(v, 4) for k, v in result.metrics.items()})}")
    print(f"registered {cfg.mlflow.registered_model} version {result.model_version} (alias candidate)")
    print(f"champion: {result.champion_reason}")
    print(result.run_id)
    if args.json:
        print_summary(
            "train",
            started,
            model=args.model,
            run_id=result.run_id,
            registered_model=cfg.mlflow.registered_model,
            model_version=result.model_version,
            selected_on=result.selected_on,
            validation=result.validation,
            validation_se=result.validation_se,
            test_metrics=result.metrics,
            champion_moved=result.champion_moved,
            champion_reason=result.champion_reason,
            input_versions=result.tables,
        )
    return 0


def main(argv: list[str] | None = None) -> int:
    return job_main("train", __doc__.splitlines()[0] if __doc__ else None, command, add_arguments, argv)


if __name__ == "__main__":
    sys.exit(main())
