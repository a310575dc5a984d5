"""Runs scored in separate stores merge into the report one store would have written."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from downbeat.models.evaluation import UserTerms
from downbeat.models.merging import (
    ChildPlan,
    ScoredRun,
    child_results,
    merge_runs,
    merged_report,
    runs_record,
)

USERS = np.array([f"u{i:03d}" for i in range(40)], dtype=object)
CHILDREN = [ChildPlan("base", "sasrec", {}), ChildPlan("new", "gsasrec", {"t": 0.75})]
PLAN = [f"{child.name} seed={seed}" for seed in (7, 8, 9) for child in CHILDREN]


def scored(name: str) -> ScoredRun:
    """A run with per-user hits and gains drawn from its name (the new child scores higher)."""
    child, seed = name.split(" seed=")
    rng = np.random.default_rng(2 * int(seed) + (child == "new"))
    lift = 0.15 if child == "new" else 0.0
    hits = (rng.random(len(USERS)) < 0.3 + lift).astype(float)
    gains = hits * rng.uniform(0.3, 1.0, len(USERS))
    counts = np.ones(len(USERS))
    counts[rng.integers(0, len(USERS))] = 0.0  # a user without a positive target
    terms = UserTerms(
        USERS,
        {"hr@10_pos": hits * counts, "ndcg@10_pos": gains * counts},
        {"hr@10_pos": counts, "ndcg@10_pos": counts},
    )
    logged = {"best_epoch": float(int(seed) % 5), "epochs_run": float(20 + int(seed)), "cos": 0.1 * int(seed)}
    return ScoredRun(
        name, child, int(seed) - 7, int(seed) + (10 if child == "new" else 0), f"id-{name}", logged, terms
    )


def report_of(names: list[str], **more) -> dict:
    """A runs.json as a process holding only `names` writes it (through JSON and back)."""
    record = {
        "experiment": "e",
        "design": "d1",
        "reference": "base",
        "metrics": ["hr@10_pos", "ndcg@10_pos"],
        "run_metrics": ["cos"],
        "scoring": {"bootstrap": 200, "seed": 0},
        "build_settings": {"split.protocol": "leave_one_out"},
        **runs_record(PLAN, CHILDREN, [scored(n) for n in PLAN if n in names]),
        "waiting": [n for n in PLAN if n not in names],
        **more,
    }
    return json.loads(json.dumps(record))


def test_merged_runs_report_exactly_what_one_store_with_every_run_reports():
    alone = child_results(CHILDREN, "base", ["cos"], [scored(n) for n in PLAN], 200, 0)
    parts = [
        ("a.json", report_of(PLAN[:3])),
        ("b.json", report_of(PLAN[2:5])),
        ("c.json", report_of(PLAN[5:])),
    ]
    summary, document = merged_report(parts)
    runs, _ = merge_runs(parts)
    assert [r.name for r in runs] == PLAN  # plan order, the run found twice kept once
    merged = child_results(CHILDREN, "base", ["cos"], runs, 200, 0)
    assert merged == alone  # figures, intervals, spreads, epochs: equal, not only close
    new = summary["children"]["new"]
    assert new["seeds"] == 3 and new["best_epochs"] == [2, 3, 4] and new["epochs_run"] == 29
    d = alone[1].differences["hr@10_pos"]
    assert (new["hr@10_pos"]["diff"], new["hr@10_pos"]["diff_low"]) == (d.diff, d.diff_low)
    assert new["hr@10_pos"]["diff_seed_std"] == alone[1].diff_spread["hr@10_pos"]
    assert summary["merged_from"] == ["a.json", "b.json", "c.json"] and len(summary["runs"]) == 6
    assert "Merged from 3 report(s): a.json, b.json, c.json (design d1)" in document
    assert "3 training seed(s) per child" in document


def test_reports_that_cannot_merge_are_refused_naming_what_differs():
    whole = ("all.json", report_of(PLAN))
    with pytest.raises(
        ValueError, match=re.escape("no finished run named 'base seed=9', 'new seed=9' in a.json, b.json")
    ):
        merge_runs([("a.json", report_of(PLAN[:2])), ("b.json", report_of(PLAN[2:4]))])
    other = report_of(PLAN[4:], design="d2")
    with pytest.raises(
        ValueError,
        match=re.escape("o.json and all.json are not runs of one experiment: their 'design' differ"),
    ):
        merge_runs([whole, ("o.json", other)])
    again = report_of(PLAN[:1])
    again["runs"]["base seed=7"]["run_id"] = "elsewhere"
    with pytest.raises(
        ValueError, match=re.escape("run 'base seed=7' was trained twice: run elsewhere in x.json and run")
    ):
        merge_runs([whole, ("x.json", again)])
    old = {k: v for k, v in report_of(PLAN).items() if k != "runs"}
    with pytest.raises(ValueError, match=re.escape("old.json holds no scored runs")):
        merge_runs([whole, ("old.json", old)])


def test_children_pair_seed_by_seed_whatever_their_train_seeds_and_not_when_one_lacks_a_seed():
    # 'new' trains under seeds 17-19 (a child with a train.seed of its own), 'base' under 7-9
    runs = [scored(n) for n in PLAN]
    assert [r.seed for r in runs if r.child == "new"] == [17, 18, 19]
    assert child_results(CHILDREN, "base", [], runs, 50, 0)[1].differences  # paired by seed index
    short = [r for r in runs if r.name != "new seed=9"]
    with pytest.raises(
        ValueError, match=re.escape("child 'new' has runs of seeds [17, 18], but 'base', which")
    ):
        child_results(CHILDREN, "base", [], short, 50, 0)
    lacking = {k: v for k, v in report_of(PLAN).items() if k != "plan_children"}
    with pytest.raises(ValueError, match=re.escape("l.json is not a runs record: it has no 'plan_children'")):
        merge_runs([("l.json", lacking)])


def test_whole_numbers_and_fractions_come_back_from_json_as_the_same_float64_values():
    run = scored("new seed=8")
    back = merge_runs([("r.json", report_of(["new seed=8"], plan=["new seed=8"]))])[0][0]
    for name in run.terms.sums:
        assert back.terms.sums[name].dtype == np.float64
        assert np.array_equal(back.terms.sums[name], run.terms.sums[name])
        assert np.array_equal(back.terms.counts[name], run.terms.counts[name])
    assert list(back.terms.users) == list(USERS) and back.logged == run.logged
