"""The champion gate's rule, one test per outcome, on a real MLflow registry (sqlite) holding two
versions, with each user's validation figures planted: decide_champion takes the candidate's values
and a scorer of the champion, so no model needs training here. tests/jobs/test_train_evaluate.py
runs the gate after real training."""

from __future__ import annotations

import numpy as np
import pytest
from mlflow.tracking import MlflowClient

from downbeat.models.tracking import CHAMPION, RegistrySettings, decide_champion

USERS = np.array([f"u{i:02d}" for i in range(40)])
RANKING = np.linspace(0.1, 0.5, 40)  # the champion's per-user NDCG@10
CHAMPION_VALUES = {"paired_accuracy": (USERS, np.full(40, 0.6)), "ndcg@10_pos": (USERS, RANKING)}


def candidate(accuracy: float, ndcg_shift: float) -> dict:
    return {"paired_accuracy": (USERS, np.full(40, accuracy)), "ndcg@10_pos": (USERS, RANKING + ndcg_shift)}


@pytest.fixture
def registry(tmp_path):
    """Versions 1 and 2 of `downbeat`; version 1 is champion."""
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlruns.db'}")
    client.create_registered_model("downbeat")
    for _ in range(2):
        client.create_model_version("downbeat", source=str(tmp_path / "model"))
    client.set_registered_model_alias("downbeat", CHAMPION, "1")
    return client


DEFAULT_GATE = RegistrySettings()  # champion metric: the run's own; guard: val_ndcg@10_pos


def decide(client, values, gate=DEFAULT_GATE, scorer=lambda uri: CHAMPION_VALUES, version="2"):
    return decide_champion(
        client, "downbeat", version, "validation@1", gate, "paired_accuracy", values, scorer
    )


def champion_of(client) -> str:
    return str(client.get_model_version_by_alias("downbeat", CHAMPION).version)


def test_with_no_champion_the_candidate_becomes_champion(registry):
    registry.delete_registered_model_alias("downbeat", CHAMPION)
    decision = decide(registry, candidate(0.1, -0.3))
    assert decision.moved and decision.reason == "no champion yet: version 2 becomes champion"
    assert champion_of(registry) == "2"


def test_the_champion_itself_stays(registry):
    decision = decide(registry, candidate(0.1, 0.0), version="1")
    assert decision.moved and decision.reason == "version 1 is already champion"


def test_a_lower_primary_figure_keeps_the_champion(registry):
    decision = decide(registry, candidate(0.59, 0.0))
    assert not decision.moved and "below the champion's; champion stays version 1" in decision.reason
    assert champion_of(registry) == "1"


def test_better_pairs_but_a_catalog_ranked_worse_beyond_the_interval_keeps_the_champion(registry):
    decision = decide(registry, candidate(0.7, -0.05))
    assert not decision.moved and "but guard ndcg@10_pos" in decision.reason
    assert "falls below it by more than its interval" in decision.reason
    assert champion_of(registry) == "1"


def test_a_champion_that_cannot_be_scored_stays_and_the_reason_says_why(registry):
    decision = decide(registry, candidate(0.9, 0.0), scorer=lambda uri: 1 / 0)
    assert not decision.moved
    assert decision.reason == (
        "champion version 1 could not be scored on validation@1 (division by zero): it stays champion"
    )
    assert champion_of(registry) == "1"


def test_a_tie_on_the_primary_figure_with_the_guard_held_moves_the_alias(registry):
    decision = decide(registry, candidate(0.6, 0.0))
    assert decision.moved and "guard ndcg@10_pos" in decision.reason and "held" in decision.reason
    assert decision.reason.endswith("version 2 becomes champion")
    assert champion_of(registry) == "2"


def test_the_primary_figure_may_be_the_ranking_with_pair_ordering_as_the_guard(registry):
    gate = RegistrySettings(champion_metric="val_ndcg@10_pos", guard_metrics=("val_paired_accuracy",))
    decision = decide(registry, candidate(0.5, 0.01), gate=gate)
    assert decision.reason.startswith("validation ndcg@10_pos ")
    assert not decision.moved and "but guard paired_accuracy" in decision.reason
    assert champion_of(registry) == "1"


def test_without_the_primary_figure_on_either_side_the_champion_stays(registry):
    decision = decide(registry, {"ndcg@10_pos": (USERS, RANKING + 0.2)})
    assert not decision.moved and decision.reason.startswith("no validation paired_accuracy to compare")
    assert champion_of(registry) == "1"


def test_promote_keeps_the_gates_verdict_unless_overridden_and_says_so(registry):
    from downbeat.models.data import TableSnapshot
    from downbeat.models.promotion import VALIDATION_TABLES, promote_champion

    tables = {t: TableSnapshot(t, f"lh/{t}", 3, (), 1) for t in VALIDATION_TABLES}
    worse = candidate(0.59, 0.0)

    def score(uri: str) -> dict:
        return worse if uri == "models:/downbeat/2" else CHAMPION_VALUES

    kept = promote_champion(registry, DEFAULT_GATE, "downbeat", "2", tables, score, override=False)
    assert not kept.moved and "below the champion's; champion stays version 1" in kept.reason
    assert champion_of(registry) == "1"
    forced = promote_champion(registry, DEFAULT_GATE, "downbeat", "2", tables, score, override=True)
    assert forced.moved and forced.reason.endswith("; --override: version 2 becomes champion anyway")
    assert "on lh/gold/validation_pairs@3 and lh/gold/validation_next@3" in forced.reason
    assert champion_of(registry) == "2"
