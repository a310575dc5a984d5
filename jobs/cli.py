"""The `downbeat` console script: one sub-command per job, global --conf/--set on every one."""

from __future__ import annotations

import argparse
import sys

from downbeat.jobs import (
    build,
    claims,
    compare,
    demo,
    doctor,
    evaluate,
    experiment,
    ingest,
    maintain,
    promote,
    recommend,
    synth,
    train,
)
from downbeat.jobs.common import Parser, add_global_options, config_from, guarded
from downbeat.jobs.config import to_yaml
from downbeat.models.settings import MODEL_NAMES

# The commands in the order `downbeat --help` lists them: (name, job module, help).
JOBS = (
    ("doctor", doctor, "check Java, Spark, the Delta engine and the lakehouse root"),
    ("synth", synth, "write a synthetic raw log with planted tastes (events format)"),
    ("ingest", ingest, "raw logs -> bronze/events (rejected rows -> bronze/quarantine)"),
    ("build", build, "bronze/events -> silver/plays and every gold table"),
    ("maintain", maintain, "compact small files and vacuum old ones, table by table"),
    ("train", train, "train a model on the gold tables, track it in MLflow, register it"),
    ("evaluate", evaluate, "score an MLflow model URI on gold/eval_pairs and gold/eval_next"),
    (
        "compare",
        compare,
        "score two MLflow models on the same eval tables: paired differences with bootstrap intervals",
    ),
    (
        "promote",
        promote,
        "give a registered version an alias (champion through the gate train applies), by hand",
    ),
    (
        "recommend",
        recommend,
        "rank the catalog for every user with a registered model -> gold/recommendations",
    ),
    (
        "experiment",
        experiment,
        "train a spec's grid as MLflow child runs and report each against the reference, paired",
    ),
    ("claims", claims, "the seed papers' claims against the experiments' reports (docs/results.md)"),
    ("demo", demo, "synth -> ingest -> build -> train a spec's baseline and challenger -> compare"),
)


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="downbeat",
        description="Spark feature pipelines and models that learn from what listeners reject.",
        epilog="Exit codes: 0 ok, 2 bad input or config, 130/143 interrupted (SIGINT/SIGTERM), 1 other.",
    )
    add_global_options(parser)
    common = Parser(add_help=False)
    add_global_options(common, after_command=True)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    config = commands.add_parser("config", parents=[common], help="show the resolved configuration")
    config_commands = config.add_subparsers(dest="config_command", metavar="ACTION", required=True)
    show = config_commands.add_parser("show", parents=[common], help="print the resolved config as YAML")
    show.add_argument(
        "--model",
        default=None,
        choices=MODEL_NAMES,
        help="with this architecture's defaults (conf/models/<model>.yaml), as train --model reads it",
    )
    show.set_defaults(handler=_config_show)

    for name, job, help_text in JOBS:
        sub = commands.add_parser(name, parents=[common], help=help_text)
        if hasattr(job, "add_arguments"):
            job.add_arguments(sub)
        sub.set_defaults(handler=job.command)
    return parser


def _config_show(args: argparse.Namespace) -> int:
    print(to_yaml(config_from(args, architecture=args.model)), end="")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return guarded(lambda: args.handler(args))


if __name__ == "__main__":
    sys.exit(main())
