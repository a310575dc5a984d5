"""Experiment specs: the shipped ones load, and a bad spec is one line naming the file and key."""

from __future__ import annotations

import re

import pytest

from downbeat.jobs.cli import main
from downbeat.jobs.config import PROJECT_ROOT
from downbeat.jobs.experiment import child_configs, load_spec, seeded, selected
from downbeat.pipelines.errors import InputError
from tests.jobs.small import spec_from

SHIPPED = sorted((PROJECT_ROOT / "conf" / "experiments").glob("*.yaml"))


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.stem)
def test_each_shipped_spec_loads_and_every_childs_configuration_resolves(path):
    spec = load_spec(str(path))
    configs = child_configs(spec, None, [])
    assert spec.reference in configs and len(configs) >= 2


def test_a_grid_is_every_combination_named_by_the_settings_that_vary(tmp_path):
    spec = load_spec(
        spec_from(
            tmp_path,
            "name: g\nreference: hybrid p_hard=0.0\nmetrics: [auc]\nset: {train.max_epochs: 3}\n"
            "grid: {model: [hybrid, baseline], model.hybrid.p_hard: [0.0, 1.0], model.hybrid.k: 7}\n",
        )
    )
    assert [c.name for c in spec.children] == [
        "hybrid p_hard=0.0",
        "hybrid p_hard=1.0",
        "baseline p_hard=0.0",
        "baseline p_hard=1.0",
    ]
    configs = child_configs(spec, None, ["train.max_epochs=9", "model.hybrid.k=5"])
    chosen = configs["baseline p_hard=1.0"]
    # the spec's own settings win over --set; the grid's over the spec's `set`
    assert chosen.model.hybrid.p_hard == 1.0 and chosen.model.hybrid.k == 7 and chosen.train.max_epochs == 3
    assert spec.children[1].settings == {"model.hybrid.p_hard": 1.0, "model.hybrid.k": 7}


def test_runs_are_planned_seed_by_seed_so_a_stopped_experiment_has_whole_seeds(tmp_path):
    spec = load_spec(
        spec_from(
            tmp_path,
            "name: s\nreference: a\nmetrics: [auc]\nseeds: 2\nset: {train.seed: 3}\n"
            "children: [{name: a, model: sasrec}, {name: b, model: popularity}]\n",
        )
    )
    plan = seeded(spec, spec.seeds, child_configs(spec, None, []))
    assert [(run.name, run.seed_index, run.settings.train.seed) for run in plan] == [
        ("a seed=3", 0, 3),
        ("b seed=3", 0, 3),
        ("a seed=4", 1, 4),
        ("b seed=4", 1, 4),
    ]

    # --only names runs, or children for each of their seeds; anything else is bad input naming it
    assert selected(spec, plan, None) is None
    assert selected(spec, plan, ["a", "b seed=4"]) == {"a seed=3", "a seed=4", "b seed=4"}
    with pytest.raises(InputError, match=r"--only 'a seed=5': .* its runs are 'a seed=3', 'b seed=3', "):
        selected(spec, plan, ["a", "a seed=5"])


BAD = [
    ("name: x\nreference: a\nmetrics: [auc]\ngrid: {model: [hybrid]}\nextra: 1\n", "unknown key 'extra'"),
    ("name: x\nreference: a\nmetrics: [nope]\ngrid: {model: [hybrid]}\n", "unknown metric 'nope'"),
    ("name: x\nreference: a\nmetrics: [auc]\ngrid: {model: [hybrid]}\n", "reference 'a' is not a child"),
    ("name: x\nreference: hybrid\nmetrics: [auc]\ngrid: {model: [hybrd]}\n", "unknown model 'hybrd'"),
    ("name: x\nreference: hybrid\nmetrics: [auc]\n", "exactly one of 'grid' and 'children'"),
    ("reference: hybrid\nmetrics: [auc]\ngrid: {model: [hybrid]}\n", "key 'name' is required"),
    (
        "name: x\nreference: a\nmetrics: [auc]\nchildren: [{name: a, model: hybrid, set: {train.nope: 1}}]\n",
        "child 'a': unknown config key 'train.nope'",
    ),
    (
        "name: x\nreference: a\nmetrics: [auc]\nchildren: [{name: a, model: sasrec, seed: 1}]\n",
        "unknown key 'seed'",
    ),
    ("name: [x\n", "is not YAML"),
    ("name: x\nreference: a: b\n", "is not YAML at line 2: mapping values are not allowed here"),
    (
        "name: x\nreference: a\nmetrics: [auc]\nbuild: {model.dim: 8}\n"
        "children: [{name: a, model: sasrec}]\n",
        "'build' names 'model.dim', which build does not read",
    ),
    (
        "name: x\nreference: a\nmetrics: [auc]\nchildren: [{name: a, model: sasrec}, "
        "{name: b, model: sasrec, versus: c}]\n",
        "child 'b' is compared with 'c', which is not another child",
    ),
]


@pytest.mark.parametrize("text,message", BAD, ids=[m for _, m in BAD])
def test_a_bad_spec_exits_2_with_one_line_naming_the_file_and_nothing_is_tracked(
    tmp_path, capsys, text, message
):
    spec = tmp_path / "bad.yaml"
    spec.write_text(text)
    store = tmp_path / "m.db"
    code = main(["--set", f"mlflow.tracking_uri=sqlite:///{store}", "experiment", "--spec", str(spec)])
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(spec) in err[0] and message in err[0]
    assert not store.exists()


def test_a_missing_spec_is_named(tmp_path, capsys):
    assert main(["experiment", "--spec", str(tmp_path / "none.yaml")]) == 2
    assert f"experiment spec {tmp_path / 'none.yaml'} not found" in capsys.readouterr().err


def test_load_spec_refuses_two_children_of_one_name(tmp_path):
    path = spec_from(
        tmp_path,
        "name: x\nreference: a\nmetrics: [auc]\n"
        "children: [{name: a, model: hybrid}, {name: a, model: sasrec}]\n",
    )
    with pytest.raises(InputError, match="two children are named 'a'"):
        load_spec(path)


def test_a_spec_value_reaches_the_config_as_the_same_value_and_type(tmp_path):
    path = spec_from(
        tmp_path,
        "name: x\nreference: a\nmetrics: [auc]\nset: {spark.app_name: 'on', train.seed: 3}\n"
        "children: [{name: a, model: hybrid,\n"
        "            set: {optim.learning_rate: 0.00001, optim.weight_decay: 1.0e-3}}]\n",
    )
    cfg = child_configs(load_spec(path), None, [])["a"]
    assert cfg.optim.learning_rate == 0.00001 and cfg.optim.weight_decay == 0.001
    assert cfg.spark.app_name == "on" and cfg.train.seed == 3


@pytest.mark.parametrize("key", ["mlflow.experiment", "lakehouse.root"])
def test_a_spec_may_not_move_its_runs_to_another_tracking_store_or_lakehouse(tmp_path, key):
    path = spec_from(
        tmp_path,
        f"name: x\nreference: a\nmetrics: [auc]\nchildren: [{{name: a, model: hybrid, set: {{{key}: y}}}}]\n",
    )
    with pytest.raises(InputError, match=re.escape(f"child 'a' sets '{key}'")):
        load_spec(path)


def test_every_shipped_claim_names_a_shipped_experiments_child_and_metric():
    from downbeat.jobs.claims import CLAIMS, load_claims

    specs = {spec.name: spec for spec in (load_spec(str(p)) for p in SHIPPED)}
    for claim in load_claims(str(CLAIMS)):
        if claim.untestable:
            continue
        spec = specs[claim.experiment]
        assert claim.child in {c.name for c in spec.children}, claim
        assert claim.metric in spec.metrics, claim


def test_claims_writes_its_table_from_report_files_into_the_generated_section(tmp_path, capsys):
    import json

    claims = tmp_path / "claims.yaml"
    claims.write_text(
        "claims:\n  - {claim: c, paper: p, here: h, experiment: e, child: new, metric: m, expect: lower}\n"
    )
    figures = {"value": 0.4, "diff": -0.1, "diff_low": -0.2, "diff_high": -0.05}
    report = tmp_path / "report.json"
    report.write_text(
        json.dumps({"experiment": "e", "reference": "b", "children": {"new": {"seeds": 3, "m": figures}}})
    )
    out = tmp_path / "results.md"
    out.write_text("# Results\n")
    store = f"sqlite:///{tmp_path / 'none.db'}"
    args = ["--set", f"mlflow.tracking_uri={store}", "claims", "--claims", str(claims)]
    assert main([*args, "--report", str(report), "--out", str(out)]) == 0
    assert "| c | p | h | m 0.4000; new - b -0.1000 [-0.2000, -0.0500] (3 seeds) | held |" in out.read_text()
    assert not (tmp_path / "none.db").exists()  # no store is created to look for reports
    claims.write_text(claims.read_text().replace("paper: p", "paper: p2"))
    assert main([*args, "--out", str(out)]) == 0  # no report this time: the row's verdict stands
    assert "| c | p2 | h | m 0.4000; new - b -0.1000 [-0.2000, -0.0500] (3 seeds) | held |" in out.read_text()
    claims.write_text("claims:\n  - {claim: c, paper: p, here: h, experiment: e, child: new, metrc: m}\n")
    assert main([*args]) == 2
    assert f"claims file {claims}: claims[0]: unknown key 'metrc'" in capsys.readouterr().err
    twice = "  - {claim: c, paper: p, here: h, experiment: e, child: new, metric: m}\n" * 2
    claims.write_text("claims:\n" + twice)
    assert main([*args]) == 2
    assert "claims[1] repeats another claim's 'claim' and 'here'" in capsys.readouterr().err
