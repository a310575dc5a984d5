"""The `downbeat` console script: one sub-command per job, global --conf/--set on every one."""

from __future__ import annotations

import argparse
import sys

from downbeat.jobs import (
    build,
    compare,
    demo,
    doctor,
    evaluate,
    experiment,
    ingest,
    maintain,
    recommend,
    synth,
    train,
)
from downbeat.jobs.common import Parser, add_global_options, config_from, guarded
from downbeat.jobs.config import to_yaml


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="downbeat",
        description="Spark feature pipelines and models that learn from what listeners reject.",
        epilog="Exit codes: 0 ok, 2 bad input or config, 1 anything else.",
    )
    add_global_options(parser)
    common = Parser(add_help=False)
    add_global_options(common, after_command=True)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    config = commands.add_parser("config", parents=[common], help="show the resolved configuration")
    config_commands = config.add_subparsers(dest="config_command", metavar="ACTION", required=True)
    show = config_commands.add_parser("show", parents=[common], help="print the resolved config as YAML")
    show.set_defaults(handler=_config_show)

    check = commands.add_parser(
        "doctor", parents=[common], help="check Java, Spark, the Delta engine and the lakehouse root"
    )
    check.set_defaults(handler=doctor.command)

    generate = commands.add_parser(
        "synth", parents=[common], help="write a synthetic raw log with planted tastes (events format)"
    )
    synth.add_arguments(generate)
    generate.set_defaults(handler=synth.command)

    load = commands.add_parser(
        "ingest", parents=[common], help="raw logs -> bronze/events (rejected rows -> bronze/quarantine)"
    )
    ingest.add_arguments(load)
    load.set_defaults(handler=ingest.command)

    make = commands.add_parser(
        "build", parents=[common], help="bronze/events -> silver/plays and every gold table"
    )
    build.add_arguments(make)
    make.set_defaults(handler=build.command)

    tidy = commands.add_parser(
        "maintain", parents=[common], help="compact small files and vacuum old ones, table by table"
    )
    maintain.add_arguments(tidy)
    tidy.set_defaults(handler=maintain.command)

    fit = commands.add_parser(
        "train", parents=[common], help="train a model on the gold tables, track it in MLflow, register it"
    )
    train.add_arguments(fit)
    fit.set_defaults(handler=train.command)

    score = commands.add_parser(
        "evaluate", parents=[common], help="score an MLflow model URI on gold/eval_pairs and gold/eval_next"
    )
    evaluate.add_arguments(score)
    score.set_defaults(handler=evaluate.command)

    pair = commands.add_parser(
        "compare",
        parents=[common],
        help="score two MLflow models on the same eval tables: paired differences with bootstrap intervals",
    )
    compare.add_arguments(pair)
    pair.set_defaults(handler=compare.command)

    rank = commands.add_parser(
        "recommend",
        parents=[common],
        help="rank the catalog for every user with a registered model -> gold/recommendations",
    )
    recommend.add_arguments(rank)
    rank.set_defaults(handler=recommend.command)

    grid = commands.add_parser(
        "experiment",
        parents=[common],
        help="train a spec's grid as MLflow child runs and report each against the reference, paired",
    )
    experiment.add_arguments(grid)
    grid.set_defaults(handler=experiment.command)

    run_demo = commands.add_parser(
        "demo", parents=[common], help="synth -> ingest -> build -> train baseline and hybrid -> compare"
    )
    demo.add_arguments(run_demo)
    run_demo.set_defaults(handler=demo.command)
    return parser


def _config_show(args: argparse.Namespace) -> int:
    print(to_yaml(config_from(args)), end="")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return guarded(lambda: args.handler(args))


if __name__ == "__main__":
    sys.exit(main())
