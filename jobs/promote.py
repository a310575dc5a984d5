"""`downbeat promote --version N [--alias champion] [--override] [--json]`.

Moves a registered model's alias to version N by hand, the path a team takes with
`registry.auto_promote: false`. A version whose run lacks its lineage (table versions, config,
git commit) takes no alias. For `champion` the gate `train` applies decides, both versions scored
on the validation rows the version's run recorded, and the verdict is printed; a refused version
stays where it is (exit 2) unless `--override`. Also runnable as `spark-submit jobs/promote.py`.
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

from downbeat.jobs.common import add_json_option, config_from, job_main, print_summary, table_snapshot
from downbeat.jobs.config import Config
from downbeat.models.tracking import CHAMPION, ChampionDecision
from downbeat.pipelines.errors import InputError
from downbeat.pipelines.lakehouse import Lakehouse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--version", required=True, metavar="N", help="the registered version to promote")
    parser.add_argument("--alias", default=CHAMPION, help="the alias it takes (default champion)")
    parser.add_argument(
        "--override", action="store_true", help="move champion even when the gate keeps the current one"
    )
    add_json_option(parser)


def run(cfg: Config, version: str, alias: str = CHAMPION, *, override: bool = False) -> ChampionDecision:
    """Give `version` of the configured registered model `alias`, through the champion gate for
    `champion`."""
    from mlflow.tracking import MlflowClient

    from downbeat.models.promotion import VALIDATION_TABLES, lineage, promote_champion
    from downbeat.models.registry import load_pyfunc
    from downbeat.models.tracking import kept_logging
    from downbeat.models.validation import ValidationSet

    name = cfg.mlflow.registered_model
    client = MlflowClient(cfg.mlflow.tracking_uri)
    with kept_logging():
        read = lineage(client, name, str(version))
    if alias != CHAMPION:
        client.set_registered_model_alias(name, alias, str(version))
        return ChampionDecision(True, f"version {version} takes alias {alias}")
    lakehouse = Lakehouse(None, cfg.lakehouse.root)
    tables = {}
    for table in VALIDATION_TABLES:
        if table not in read or not lakehouse.exists(table):
            raise InputError(f"version {version}'s run read no {table} that {lakehouse.root} still holds")
        tables[table] = table_snapshot(lakehouse, table, read[table])
    pairs, histories, tracks = (tables[t] for t in VALIDATION_TABLES)
    validation = ValidationSet.of(pairs, histories, tracks.rows)

    def score(uri: str) -> Any:
        model = load_pyfunc(uri, cfg.mlflow.tracking_uri, tracks, cfg.lakehouse.root)
        return validation.per_user(model.predict, chunk=cfg.train.eval_batch_size)

    return promote_champion(client, cfg.registry, name, str(version), tables, score, override=override)


def command(args: argparse.Namespace) -> int:
    started = time.monotonic()
    decision = run(config_from(args), args.version, args.alias, override=args.override)
    if not decision.moved:
        raise InputError(f"promote: {decision.reason} (--override promotes it anyway)")
    print(f"promote: {decision.reason}")
    if args.json:
        print_summary("promote", started, version=args.version, alias=args.alias, reason=decision.reason)
    return 0


def main(argv: list[str] | None = None) -> int:
    return job_main("promote", __doc__.splitlines()[0] if __doc__ else None, command, add_arguments, argv)


if __name__ == "__main__":
    sys.exit(main())
