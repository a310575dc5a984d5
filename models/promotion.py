"""Who moves an alias: `downbeat promote`, the explicit path beside `train`'s own gate.

A version takes an alias only when its run carries its lineage (the table versions it read, its
resolved config, the code's git commit). `champion` goes through the same gate as `train` applies
(models.tracking.decide_champion): both versions scored on the validation rows the candidate's run
recorded; `override` moves it whatever the gate says, and the reason records that it did.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from downbeat.models.contract import Tables
from downbeat.models.data import TableSnapshot
from downbeat.models.tracking import CHAMPION, ChampionDecision, RegistrySettings, decide_champion
from downbeat.pipelines.errors import InputError

GIT_TAG = "downbeat.git_commit"
VALIDATION_TABLES = (Tables.VALIDATION_PAIRS, Tables.VALIDATION_NEXT, Tables.TRACKS)


def lineage(client: Any, name: str, version: str) -> dict[str, int]:
    """The table versions version `version`'s run read; bad input (exit 2) when the version does not
    exist or its run lacks any part of its lineage (table versions, config.yaml, git commit)."""
    from mlflow.exceptions import MlflowException

    try:
        found = client.get_model_version(name, version)
    except MlflowException as exc:
        raise InputError(f"--version {version}: {str(exc).strip().splitlines()[0]}") from None
    where = f"version {version} of {name}"
    if not found.run_id:
        raise InputError(f"{where} has no run: no lineage (table versions, config, git commit), so no alias")
    run = client.get_run(found.run_id)
    tables = {k.removeprefix("table."): v for k, v in run.data.params.items() if k.startswith("table.")}
    missing = [
        what
        for what, there in (
            ("table versions", bool(tables)),
            ("config.yaml", any(a.path == "config.yaml" for a in client.list_artifacts(found.run_id))),
            ("git commit", bool(run.data.tags.get(GIT_TAG))),
        )
        if not there
    ]
    if missing:
        raise InputError(f"{where}: its run {found.run_id} lacks {', '.join(missing)}, so it takes no alias")
    return {t: int(v.rsplit("@", 1)[1]) for t, v in tables.items() if "@" in v}


def promote_champion(
    client: Any,
    gate: RegistrySettings,
    name: str,
    version: str,
    tables: Mapping[str, TableSnapshot],
    score: Any,
    *,
    override: bool,
) -> ChampionDecision:
    """The gate's decision on `version` against the current champion, both scored by `score(uri)`
    (per-user validation figures) on `tables`' rows; `override` moves the alias whatever it says."""
    selected_on = client.get_model_version(name, version).tags.get("downbeat.selected_on", "paired_accuracy")
    where = " and ".join(f"{tables[t].uri}@{tables[t].version}" for t in VALIDATION_TABLES[:2])
    mine = score(f"models:/{name}/{version}")
    decision = decide_champion(client, name, version, where, gate, selected_on, mine, score)
    if decision.moved or not override:
        return decision
    client.set_registered_model_alias(name, CHAMPION, version)
    return ChampionDecision(True, f"{decision.reason}; --override: version {version} becomes champion anyway")
