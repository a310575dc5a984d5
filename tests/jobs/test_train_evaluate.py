"""train and evaluate end to end on a lakehouse built by the real pipeline from a small synthetic log:
the MLflow run, the registry and its aliases, a fresh-process evaluate, DDP on two processes."""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import mlflow
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from deltalake import DeltaTable, write_deltalake
from mlflow.tracking import MlflowClient

from downbeat.jobs import compare, evaluate, experiment, training
from downbeat.jobs.cli import main
from downbeat.jobs.config import load_config
from downbeat.models.contract import Tables
from downbeat.models.data import TableSnapshot, read_table
from downbeat.models.evaluation import pair_predictions
from downbeat.models.lifecycle import INPUT_TABLES
from downbeat.models.merging import merged_report
from downbeat.models.metrics import paired_accuracy
from downbeat.models.tracking import CANDIDATE, CHAMPION
from downbeat.pipelines.errors import InputError
from downbeat.pipelines.lakehouse import Lakehouse
from downbeat.pipelines.sequences import UNIT_TAG
from tests.jobs.small import SHORT_SPLITS, TINY_TRAINING, own_copy, spec_from, store_settings
from tests.processes import run_command

DOWNBEAT = Path(sys.executable).parent / "downbeat"


@pytest.fixture(scope="module")
def lakehouse(built_lakehouse, tmp_path_factory):
    """This module's copy of the session's synthetic lakehouse (tests/jobs/conftest.py); tests that
    need a registry in a known state keep their MLflow store in a folder of their own."""
    return own_copy(built_lakehouse, tmp_path_factory.mktemp("train_evaluate"))


@pytest.fixture(scope="module")
def champion(lakehouse):
    """A registry of its own whose champion is a tiny two-epoch hybrid: (store root, run id)."""
    store = lakehouse / "champion"
    store.mkdir()
    cfg = load_config(None, [v for v in settings(lakehouse, store=store) if v != "--set"])
    return store, training.run(cfg, "hybrid").run_id


def downbeat(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """The command in a fresh process (the console script when installed)."""
    command = [str(DOWNBEAT)] if DOWNBEAT.exists() else [sys.executable, "-m", "downbeat.jobs.cli"]
    return run_command([*command, *args], cwd=cwd, timeout=300)


def printed_json(result: subprocess.CompletedProcess) -> dict:
    """A `--json` command's result: it succeeded, and its last stdout line is the document."""
    assert result.returncode == 0, result.stderr[-2000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def snapshot_of(lakehouse: Lakehouse, table: str) -> TableSnapshot:
    version, files, rows = lakehouse.snapshot(table)
    return TableSnapshot(table, lakehouse.uri(table), version, tuple(files), rows or 0)


def settings(root: Path, *more: str, store: Path | None = None) -> list[str]:
    """`--set` options for the lakehouse under `root`, with the MLflow store, artifacts and
    checkpoints under `store` (default `root`)."""
    values = [*store_settings(root / "lh", store or root), *TINY_TRAINING, *more]
    return [x for v in values for x in ("--set", v)]


def train_cli(
    root: Path, capsys, *args: str, more: tuple[str, ...] = (), store: Path | None = None
) -> tuple[int, list[str]]:
    code = main([*settings(root, *more, store=store), "train", *args])
    return code, capsys.readouterr().out.strip().splitlines()


def test_train_tracks_config_tables_and_metrics_registers_the_model_and_names_a_champion(
    lakehouse, capsys, tmp_path
):
    root = logging.getLogger()
    handlers = (list(root.handlers), root.level)
    code, out = train_cli(lakehouse, capsys, "--model", "hybrid", store=tmp_path)
    assert code == 0
    # the run made a fresh store and registered in it: MLflow's migrations left logging as it was
    assert (list(root.handlers), root.level) == handlers
    run_id = out[-1]
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlruns.db'}")
    run = client.get_run(run_id)
    tables = Lakehouse(None, str(lakehouse / "lh"))
    for table in INPUT_TABLES:
        assert run.data.params[f"table.{table}"] == f"{tables.uri(table)}@{tables.version(table)}"
    assert run.data.params["model"] == "hybrid" and run.data.params["train.max_epochs"] == "2"
    assert run.data.tags["downbeat.git_commit"] != "unknown"
    artifacts = {a.path for a in client.list_artifacts(run_id)}
    assert {
        "config.yaml",
        "tables.json",
        "hard_negative_tiers_by_position.png",
        "learning_curves.png",
    } <= artifacts
    logged = yaml.safe_load(Path(client.download_artifacts(run_id, "config.yaml")).read_text())
    assert logged["train"]["max_epochs"] == 2 and logged["lakehouse"]["root"] == str(lakehouse / "lh")
    history = client.get_metric_history(run_id, "val_paired_accuracy")
    assert sorted(m.step for m in history) == [0, 1]
    assert [m.step for m in client.get_metric_history(run_id, "loader_rows_per_s")] == [0, 1]
    waits = client.get_metric_history(run_id, "data_wait_share")
    assert [m.step for m in waits] == [0, 1] and all(0.0 <= m.value <= 1.0 for m in waits)
    # the registered weights are the best validation epoch's, and its figure is what the run reports
    best = max(history, key=lambda m: (m.value, -m.step))
    assert run.data.metrics["validation_paired_accuracy"] == pytest.approx(best.value)
    assert run.data.metrics["best_epoch"] == best.step
    assert run.data.metrics["validation_users"] >= 5
    assert out[0].startswith(f"validation paired_accuracy: {best.value:.4f} (standard error ")
    version = client.get_model_version_by_alias("downbeat", CANDIDATE)
    assert version.run_id == run_id
    assert client.get_model_version_by_alias("downbeat", CHAMPION).version == version.version
    assert out[-2] == f"champion: no champion yet: version {version.version} becomes champion"

    # --resume continues the same run from a checkpoint to the new max_epochs
    checkpoint = tmp_path / "checkpoints" / run_id / "epoch-001.pt"
    code, out = train_cli(
        lakehouse,
        capsys,
        "--model",
        "hybrid",
        "--resume",
        str(checkpoint),
        more=("train.max_epochs=3",),
        store=tmp_path,
    )
    assert code == 0 and out[-1] == run_id
    assert sorted(m.step for m in client.get_metric_history(run_id, "val_paired_accuracy")) == [0, 1, 1, 2]
    assert [m.step for m in client.get_metric_history(run_id, "val_popularity_paired_accuracy")] == [0]


def test_the_champion_loads_and_scores_in_a_fresh_process(lakehouse, champion, tmp_path):
    store, run_id = champion
    client = MlflowClient(f"sqlite:///{store / 'mlruns.db'}")
    assert client.get_model_version_by_alias("downbeat", CHAMPION).run_id == run_id
    out = tmp_path / "pairs.parquet"
    result = downbeat(
        *settings(lakehouse, store=store),
        "evaluate",
        "--model-uri",
        "models:/downbeat@champion",
        "--json",
        "--predictions-out",
        str(out),
        cwd=tmp_path,
    )
    metrics = printed_json(result)
    for key in (
        "paired_accuracy",
        "auc",
        "hr@10_pos",
        "hr@10_neg",
        "ndcg@10_pos",
        "ndcg@10_neg",
        "map@10",
        "skip_mrr@10",
        "coverage",
    ):
        assert key in metrics
    assert metrics["hr@1_pos"] <= metrics["hr@5_pos"] <= metrics["hr@10_pos"] <= metrics["hr@20_pos"]
    run = client.get_run(run_id)
    assert math.isclose(metrics["paired_accuracy"], run.data.metrics["test_paired_accuracy"], abs_tol=1e-9)
    predictions = pq.read_table(out)
    pairs = Lakehouse(None, str(lakehouse / "lh")).rows("gold/eval_pairs")
    assert predictions.num_rows == pairs
    assert {"up_score", "down_score", "user_id", "up_track_id", "down_track_id"} <= set(
        predictions.column_names
    )
    # the job's run(), in this process, gives the command's figures
    cfg = load_config(None, [v for v in settings(lakehouse, store=store) if v != "--set"])
    direct = evaluate.run(cfg, "models:/downbeat@champion")
    assert direct.metrics.keys() == metrics.keys()
    assert all(
        (metrics[k] is None and direct.metrics[k] != direct.metrics[k])  # NaN prints as null
        or math.isclose(direct.metrics[k], metrics[k], abs_tol=1e-12)
        for k in metrics
    )
    assert len(direct.predictions) == pairs


@pytest.mark.parametrize("name", ["gsasrec", "gru4rec", "bert4rec", "pnfrec", "popularity"])
def test_each_model_of_the_papers_trains_registers_and_scores_the_same_through_its_logged_model(
    lakehouse, tmp_path, capsys, name
):
    values = [v for v in settings(lakehouse, "train.max_epochs=1") if v != "--set"]
    values += [
        f"mlflow.tracking_uri=sqlite:///{tmp_path / 'm.db'}",
        f"mlflow.artifact_root={tmp_path / 'art'}",
    ]
    values += [f"train.checkpoint_dir={tmp_path / 'ck'}", "model.gsasrec.not_to_recommend=0.5"]
    run_id = training.run(load_config(None, values), name).run_id
    run = MlflowClient(f"sqlite:///{tmp_path / 'm.db'}").get_run(run_id)
    assert run.data.params["model"] == name
    capsys.readouterr()
    model_uri = f"runs:/{run_id}/model"
    assert (
        main([*[x for v in values for x in ("--set", v)], "evaluate", "--model-uri", model_uri, "--json"])
        == 0
    )
    metrics = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert math.isclose(metrics["paired_accuracy"], run.data.metrics["test_paired_accuracy"], abs_tol=1e-9)
    assert metrics["next_pos"] > 0
    # the logged model ranks the catalog as the trained one did: the run's own test figure
    assert math.isclose(metrics["ndcg@10_pos"], run.data.metrics["test_ndcg_at_10_pos"], abs_tol=1e-9)


def test_a_trained_run_logs_popularitys_figure_on_its_validation_rows_as_its_floor(
    lakehouse, tmp_path, caplog
):
    # the tiny log's validation users have no next positive: both runs select on paired accuracy
    values = settings(lakehouse, "train.max_epochs=1", "train.select_on=paired_accuracy", store=tmp_path)
    cfg = load_config(None, [v for v in values if v != "--set"])
    counted = training.run(cfg, "popularity").run_id
    with caplog.at_level(logging.INFO, logger="downbeat"):
        trained = training.run(cfg, "sasrec").run_id
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlruns.db'}")
    figure = client.get_run(counted).data.metrics["validation_paired_accuracy"]
    floor = client.get_metric_history(trained, "val_popularity_paired_accuracy")
    assert [m.step for m in floor] == [0] and floor[0].value == pytest.approx(figure, abs=1e-12)
    epochs = [r.getMessage() for r in caplog.records if r.getMessage().startswith("epoch 0:")]
    assert len(epochs) == 1 and f"(popularity {figure:.4f})" in epochs[0]


def test_the_champion_gate_rescores_the_champion_on_the_same_validation_rows(lakehouse, capsys, tmp_path):
    # a registry of this test's own: a hybrid champion, then a baseline through the gate
    assert train_cli(lakehouse, capsys, "--model", "hybrid", store=tmp_path)[0] == 0
    code, out = train_cli(lakehouse, capsys, "--model", "baseline", store=tmp_path)
    assert code == 0
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlruns.db'}")
    new = client.get_model_version_by_alias("downbeat", CANDIDATE)
    assert out[-2].startswith("champion: validation paired_accuracy ")
    assert "champion re-scored on the same rows" in out[-2]
    assert client.get_run(new.run_id).data.tags["downbeat.selected_on"] == "paired_accuracy"

    # the rule's every outcome, with planted per-user figures: tests/models/test_champion_rule.py


def test_two_ddp_processes_through_torch_distributor_train_and_register(lakehouse, spark):
    cfg = load_config(None, [a for a in settings(lakehouse, "train.max_epochs=1") if a != "--set"])
    result = training.run(cfg, "hybrid", processes=2)
    client = MlflowClient(cfg.mlflow.tracking_uri)
    run = client.get_run(result.run_id)
    assert run.data.params["processes"] == "2"
    # the tiny lakehouse's 32 training rows at batch 16 on each of two ranks: one step an epoch
    assert (run.data.params["train_rows"], run.data.params["steps_per_epoch"]) == ("32", "1")
    [epoch] = client.get_metric_history(result.run_id, "val_paired_accuracy")
    # the two ranks' validation shares add up to the whole set: the figure a one-process scoring gives
    model = mlflow.pyfunc.load_model(f"runs:/{result.run_id}/model")
    tables = Lakehouse(None, cfg.lakehouse.root)
    frames = [
        read_table(snapshot_of(tables, t)).to_pandas()
        for t in ("gold/validation_pairs", "gold/validation_next")
    ]
    scored = pair_predictions(model.predict, *frames)
    whole = paired_accuracy(
        scored["user_id"].to_numpy(), scored["up_score"].to_numpy(), scored["down_score"].to_numpy()
    )
    assert epoch.step == 0 and epoch.value == pytest.approx(whole, abs=1e-6) == result.validation
    assert client.get_model_version_by_alias("downbeat", CANDIDATE).run_id == result.run_id


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["train", "--model", "hybrid", "--processes", "0"], "--processes must be at least 1, got 0"),
        (
            ["train", "--model", "hybrid", "--resume", "{tmp}/none.pt"],
            "--resume {tmp}/none.pt: no checkpoint",
        ),
        (  # a file that is not a checkpoint (here: this test module) is read as data, never run
            ["train", "--model", "hybrid", "--resume", __file__],
            f"--resume {__file__}: {__file__} is not a downbeat checkpoint",
        ),
        (["evaluate", "--model-uri", "models:/downbeat@nobody"], "--model-uri models:/downbeat@nobody:"),
        (  # the tables were built a row per user
            ["--set", "sequences.unit=session", "train", "--model", "sasrec"],
            "holds a row per user, but sequences.unit is session: run `downbeat build` with this",
        ),
        (
            ["evaluate", "--model-uri", "x", "--predictions-out", "{tmp}/no/p.parquet"],
            "folder {tmp}/no does not",
        ),
    ],
)
def test_bad_train_and_evaluate_input_exits_2_with_one_line(lakehouse, tmp_path, capsys, args, message):
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    assert main([*settings(lakehouse), *args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert message.replace("{tmp}", str(tmp_path)) in err[-1]


def test_the_sequence_unit_is_read_from_the_write_that_made_the_data_not_a_later_optimize(
    spark, lakehouse, tmp_path
):
    copy = tmp_path / "lh"
    shutil.copytree(lakehouse / "lh", copy)
    tables = Lakehouse(spark, str(copy))
    with tables.transaction() as tx:  # the same rows, committed as a session build tags them
        for table in ("gold/sequences", "gold/training_sequences"):
            tx.stage(tables.read(table).coalesce(3), table, tags={UNIT_TAG: "session"})
    optimized = tables.optimize("gold/sequences")
    assert optimized.version_after > optimized.version_before  # a commit without downbeat's tags
    inputs = {t: snapshot_of(tables, t) for t in INPUT_TABLES}
    session = load_config(None, [f"lakehouse.root={copy}", "sequences.unit=session", "model.max_length=20"])
    assert training.check_inputs(tables, inputs, session).train_rows > 0
    with pytest.raises(InputError, match=r"holds a row per session, but sequences\.unit is user"):
        training.check_inputs(tables, inputs, load_config(None, [f"lakehouse.root={copy}"]))


def test_training_without_gold_tables_exits_2_naming_the_table(tmp_path, capsys):
    code = main(
        [
            "--set",
            f"lakehouse.root={tmp_path / 'empty'}",
            "--set",
            f"mlflow.tracking_uri=sqlite:///{tmp_path / 'm.db'}",
            "train",
            "--model",
            "sasrec",
        ]
    )
    assert code == 2
    assert "table gold/sequences does not exist" in capsys.readouterr().err
    assert not (tmp_path / "m.db").exists()


def test_the_demo_refuses_a_folder_that_is_not_empty(tmp_path, capsys):
    (tmp_path / "keep.txt").write_text("mine")
    assert main(["demo", "--root", str(tmp_path)]) == 2
    assert f"--root {tmp_path} is not empty" in capsys.readouterr().err
    assert [p.name for p in tmp_path.iterdir()] == ["keep.txt"]


def test_an_empty_eval_table_is_refused_before_training_starts(lakehouse, tmp_path, capsys):
    # (gold/eval_pairs may be empty: leave-one-out has one target per user, so no pairs)
    copy = tmp_path / "lh"
    shutil.copytree(lakehouse / "lh", copy)
    empty = DeltaTable(str(copy / "gold" / "eval_next")).to_pyarrow_table().slice(0, 0)
    write_deltalake(str(copy / "gold" / "eval_next"), empty, mode="overwrite")
    code = main(
        [
            "--set",
            f"lakehouse.root={copy}",
            "--set",
            f"mlflow.tracking_uri=sqlite:///{tmp_path / 'm.db'}",
            "train",
            "--model",
            "hybrid",
        ]
    )
    assert code == 2
    assert (
        "table gold/eval_next version 1 is empty: nothing to train or evaluate on" in capsys.readouterr().err
    )
    assert not (tmp_path / "m.db").exists()


@pytest.mark.parametrize("change", ["another build", "a narrower table", "another layout"])
def test_a_training_table_that_does_not_match_the_build_or_the_config_is_refused(
    lakehouse, tmp_path, capsys, change
):
    copy = tmp_path / "lh"
    shutil.copytree(lakehouse / "lh", copy)
    more = ["--set", f"lakehouse.root={copy}", "--set", f"mlflow.tracking_uri=sqlite:///{tmp_path / 'm.db'}"]
    if change == "another build":  # one row less: what a commit phase that stopped half-way could leave
        path = str(copy / "gold" / "training_sequences")
        rows = DeltaTable(path).to_pyarrow_table()
        write_deltalake(path, rows.slice(1), mode="overwrite")
        expected = "come from different builds: run `downbeat build`"
    elif change == "another layout":  # a writer other than build: large_binary arrays
        path = str(copy / "gold" / "training_sequences")
        rows = DeltaTable(path).to_pyarrow_table()
        column = rows.schema.get_field_index("track_ids")
        rows = rows.set_column(column, "track_ids", rows.column("track_ids").cast(pa.large_binary()))
        write_deltalake(path, rows, mode="overwrite", schema_mode="overwrite")
        expected = "column track_ids of gold/training_sequences is large_binary, not binary"
    else:  # a model that reads more positions than the table was built with
        more += ["--set", "model.max_length=300", "--set", "sequences.max_length=300"]
        expected = "holds 200 positions per row, but model.max_length asks for 300"
    assert main([*more, "train", "--model", "hybrid"]) == 2
    assert expected in capsys.readouterr().err
    assert not (tmp_path / "m.db").exists()


@pytest.fixture(scope="module")
def two_models(lakehouse):
    """A baseline and a hybrid run of one epoch, in a registry of their own."""
    root = lakehouse / "pair"
    (root / "lh").parent.mkdir(exist_ok=True)
    values = [v for v in settings(lakehouse, "train.max_epochs=1") if v != "--set"]
    values += [f"mlflow.tracking_uri=sqlite:///{root / 'mlruns.db'}", f"mlflow.artifact_root={root / 'art'}"]
    cfg = load_config(None, values)
    runs = {name: training.run(cfg, name).run_id for name in ("hybrid", "baseline")}
    return values, runs


def run_cli(values: list[str], *args: str) -> subprocess.CompletedProcess:
    return downbeat(*[x for v in values for x in ("--set", v)], *args)


def test_compare_gives_both_models_metrics_as_evaluate_does_and_a_paired_interval(two_models):
    values, runs = two_models
    a, b = f"runs:/{runs['hybrid']}/model", f"runs:/{runs['baseline']}/model"
    compared = run_cli(values, "compare", "--model-uri", a, "--model-uri", b, "--json", "--bootstrap", "200")
    result = printed_json(compared)
    evaluated = run_cli(values, "evaluate", "--model-uri", b, "--json")
    alone = printed_json(evaluated)
    for metric in (
        "paired_accuracy",
        "paired_accuracy_pooled",
        "auc",
        "hr@10_pos",
        "ndcg@10_diff",
        "coverage",
    ):
        row = result[metric]
        assert set(row) == {"a", "b", "diff", "diff_low", "diff_high"}
        if alone[metric] is None or math.isnan(alone[metric]):
            # nothing to score (e.g. no user's first test-period play is a down in this small
            # log): both sides and the difference are missing, never a number
            assert metric.endswith(("_neg", "_diff")) and set(row.values()) == {None}, (metric, row)
            continue
        assert row["b"] == pytest.approx(alone[metric])
        assert row["diff"] == pytest.approx(row["a"] - row["b"])
        assert row["diff_low"] <= row["diff"] <= row["diff_high"]
    # the baseline serves only users with positive history; the hybrid serves everyone
    assert result["coverage"]["a"] == 1.0 and result["coverage"]["diff"] > 0

    # the job's run(): a model against itself differs by exactly 0 in every resample
    same, tables = compare.run(load_config(None, values), [b, b], bootstrap=50)
    assert same.keys() == result.keys() and tables["gold/eval_pairs"].rows > 0
    for d in same.values():
        if not math.isnan(d.a):
            assert d.diff == d.diff_low == d.diff_high == 0.0


def test_compare_needs_exactly_two_models(lakehouse, capsys):
    assert main([*settings(lakehouse), "compare", "--model-uri", "models:/downbeat@champion"]) == 2
    assert (
        "--model-uri must be given exactly twice (A and B), got 1"
        in capsys.readouterr().err.strip().splitlines()[-1]
    )


def test_the_demo_oracle_knows_the_generators_taste_and_popularity_does_not(lakehouse, spark):
    from downbeat.jobs.demo import reference_metrics

    cfg = load_config(None, [f"lakehouse.root={lakehouse / 'lh'}"])
    args = argparse.Namespace(users=60, days=40, tracks_per_station=150, seed=7)
    references = reference_metrics(cfg, args)
    # within a station only the planted latent match separates an up from a down
    assert references["oracle"]["paired_accuracy"] > 0.75
    assert abs(references["popularity"]["paired_accuracy"] - 0.5) < 0.15
    # a generator with another seed's tastes is no oracle for this log
    other = reference_metrics(cfg, argparse.Namespace(users=60, days=40, tracks_per_station=150, seed=8))
    assert other["oracle"]["paired_accuracy"] < references["oracle"]["paired_accuracy"] - 0.15


def test_the_comparison_document_holds_every_row_and_the_paired_differences():
    from downbeat.jobs.demo import comparison, render

    compared = {"paired_accuracy": {"a": 0.6, "b": 0.55, "diff": 0.05, "diff_low": 0.01, "diff_high": 0.09}}
    references = {"oracle": {"paired_accuracy": 0.9}, "popularity": {"paired_accuracy": 0.5}}
    table = comparison(compared, references, ("baseline", "pooled"))
    assert table == {
        "models": {
            "baseline": {"paired_accuracy": 0.55},
            "pooled": {"paired_accuracy": 0.6},
            "oracle": {"paired_accuracy": 0.9},
            "popularity": {"paired_accuracy": 0.5},
        },
        "pooled_vs_baseline": {"paired_accuracy": {"diff": 0.05, "diff_low": 0.01, "diff_high": 0.09}},
    }
    text = render(table, {"baseline": (0.5, 0.01), "pooled": (0.6, 0.02)}, ("baseline", "pooled"))
    assert "pooled - baseline [95% paired]" in text and "+0.0500 [+0.0100, +0.0900]" in text
    assert "pooled captures 25% of the oracle's" in text and "(standard errors 0.0100, 0.0200)" in text


def test_the_demo_trains_its_specs_reference_and_one_challenger(tmp_path, capsys):
    spec = tmp_path / "three.yaml"
    spec.write_text(
        "name: three\nreference: baseline\nmetrics: [paired_accuracy]\nchildren:\n"
        "  - {name: baseline, model: baseline}\n"
        "  - {name: hybrid, model: hybrid}\n  - {name: pooled, model: pooled}\n"
    )
    assert main(["demo", "--root", str(tmp_path / "d"), "--spec", str(spec)]) == 2
    assert (
        capsys.readouterr()
        .err.strip()
        .splitlines()[-1]
        .endswith(
            f"experiment spec {spec}: the demo trains a reference and one challenger, "
            "but the spec has 3 children (baseline, hybrid, pooled)"
        )
    )
    assert not (tmp_path / "d").exists()  # refused before anything is written


def test_without_validation_pairs_training_keeps_the_last_epoch_and_reports_no_validation_figure(
    lakehouse, tmp_path, capsys
):
    copy = tmp_path / "lh"
    shutil.copytree(lakehouse / "lh", copy)
    table = copy / "gold" / "validation_pairs"
    write_deltalake(str(table), DeltaTable(str(table)).to_pyarrow_table().slice(0, 0), mode="overwrite")
    values = [f"lakehouse.root={copy}", f"mlflow.tracking_uri=sqlite:///{tmp_path / 'm.db'}"]
    values += [f"mlflow.artifact_root={tmp_path / 'art'}", f"train.checkpoint_dir={tmp_path / 'ck'}"]
    values += ["model.dim=16", "model.layers=1", "train.max_epochs=2", "train.batch_size=16"]
    assert main([*[x for v in values for x in ("--set", v)], "train", "--model", "hybrid", "--json"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert out[0] == "validation paired_accuracy: nan (standard error nan)"
    summary = json.loads(out[-1])  # the scheduler's run summary: strict JSON, undefined figures null
    assert summary["job"] == "train" and summary["model"] == "hybrid" and summary["run_id"] == out[-2]
    assert summary["validation"] is None and summary["selected_on"] == "paired_accuracy"
    assert summary["model_version"] == "1"
    assert summary["input_versions"]["gold/validation_pairs"] == DeltaTable(str(table)).version() == 1
    assert set(summary["input_versions"]) == set(INPUT_TABLES)
    run = MlflowClient(f"sqlite:///{tmp_path / 'm.db'}").get_run(summary["run_id"])
    assert "validation_paired_accuracy" not in run.data.metrics
    assert run.data.metrics["best_epoch"] == 1 and run.data.metrics["epochs_run"] == 2


def test_two_ranks_on_spark_executors_train_log_from_rank_0_and_register(lakehouse, tmp_path):
    """`train.launch: cluster` on a local-cluster master: two executor JVMs, a barrier task each."""
    result = downbeat(
        *settings(
            lakehouse,
            "train.max_epochs=2",
            "train.launch=cluster",
            "spark.master=local-cluster[2,1,2048]",
            "train.collective_timeout_s=120",  # a stuck rank fails the run, with its error, within the test
            # a tracking store of its own: no other test's client holds the file while ranks write to it
            f"mlflow.tracking_uri=sqlite:///{tmp_path / 'm.db'}",
            f"mlflow.artifact_root={tmp_path / 'art'}",
        ),
        "train",
        "--model",
        "hybrid",
        "--processes",
        "2",
        cwd=tmp_path,  # ranks find the tracking store and tables by absolute paths, not this folder
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Finished distributed training with 2 executor processes" in result.stderr
    run_id = result.stdout.strip().splitlines()[-1]
    client = MlflowClient(f"sqlite:///{tmp_path / 'm.db'}")
    run = client.get_run(run_id)
    assert run.data.params["train.launch"] == "cluster" and run.data.params["processes"] == "2"
    for metric in ("val_paired_accuracy", "loader_rows_per_s", "data_wait_share", "train_sequences_per_s"):
        history = client.get_metric_history(run_id, metric)
        assert sorted(m.step for m in history) == [0, 1], metric  # one row per epoch, rank 0 alone
    assert all(0.0 <= m.value <= 1.0 for m in client.get_metric_history(run_id, "data_wait_share"))
    assert client.get_model_version_by_alias("downbeat", CANDIDATE).run_id == run_id
    assert (lakehouse / "checkpoints" / run_id / "model.pt").is_file()  # the driver wrote rank 0's model


def test_gpu_ranks_get_the_gpus_spark_discovers_for_the_driver(tmp_path):
    """`train --processes 2` with GPUs: train configures the driver's GPU resources itself. No GPU here:
    a stand-in nvidia-smi lists two, and each rank reports the CUDA_VISIBLE_DEVICES it was given."""
    fake = tmp_path / "bin" / "nvidia-smi"
    fake.parent.mkdir()
    fake.write_text('#!/bin/sh\nprintf "0\\n1\\n"\n')
    fake.chmod(0o755)
    script = (
        "import json, os\n"
        "from downbeat.jobs.config import load_config\n"
        "from downbeat.jobs.training import distributor\n"
        "def report():\n"
        "    import os\n"
        "    return {'rank': os.environ['RANK'], 'visible': os.environ.get('CUDA_VISIBLE_DEVICES')}\n"
        "d = distributor(load_config(None, ['spark.log_level=ERROR']), 2, cuda=True)\n"
        "print(json.dumps(d.run(report)))\n"
    )
    env = {**os.environ, "PATH": f"{fake.parent}:{os.environ['PATH']}"}
    env.pop("CUDA_VISIBLE_DEVICES", None)  # the stand-in nvidia-smi decides
    done = run_command([sys.executable, "-c", script], env=env, timeout=300, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    # local mode hands back the output of whichever rank finished last (train's own ranks write
    # rank 0's result to a file for that reason): either rank, seeing both GPUs
    assert seen["rank"] in ("0", "1") and sorted(seen["visible"].split(",")) == ["0", "1"]


def test_gpu_ranks_in_a_session_started_without_gpus_are_refused_naming_the_settings(spark):
    with pytest.raises(InputError, match=re.escape("spark.driver.resource.gpu.amount=2")):
        training.distributor(load_config(None), 2, cuda=True)


def test_the_gpu_discovery_script_lists_what_nvidia_smi_lists_and_nothing_without_it(tmp_path):
    fake = tmp_path / "nvidia-smi"
    fake.write_text('#!/bin/sh\nprintf "0\\n 3\\nNo devices were found\\n"\n')
    fake.chmod(0o755)
    path = {"PATH": f"{tmp_path}:/usr/bin:/bin"}
    listed = subprocess.run([str(training.GPU_DISCOVERY)], capture_output=True, text=True, env=path)
    assert json.loads(listed.stdout) == {"name": "gpu", "addresses": ["0", "3"]}
    none = subprocess.run(
        [str(training.GPU_DISCOVERY)], capture_output=True, text=True, env={"PATH": "/usr/bin:/bin"}
    )
    assert json.loads(none.stdout) == {"name": "gpu", "addresses": []}
    # with CUDA_VISIBLE_DEVICES set, the indices torch sees (what TorchDistributor maps back through it)
    visible = subprocess.run(
        [str(training.GPU_DISCOVERY)],
        capture_output=True,
        text=True,
        env={"PATH": f"{tmp_path}:/usr/bin:/bin", "CUDA_VISIBLE_DEVICES": "2,3"},
    )
    assert json.loads(visible.stdout) == {"name": "gpu", "addresses": ["0", "1"]}


def test_an_experiment_whose_child_cannot_train_on_the_tables_exits_2_before_anything_is_tracked(
    lakehouse, tmp_path, capsys
):
    # session rows asked of tables built a row per user
    spec = spec_from(
        tmp_path,
        "name: s\nreference: user\nmetrics: [auc]\nchildren:\n  - {name: user, model: sasrec}\n"
        "  - {name: sessions, model: sasrec, set: {sequences.unit: session}}\n",
    )
    store = tmp_path / "m.db"
    values = settings(lakehouse, f"mlflow.tracking_uri=sqlite:///{store}")
    code = main([*values, "experiment", "--spec", str(spec)])
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert f"experiment spec {spec}: child 'sessions': table gold/sequences version" in err
    assert "holds a row per user, but sequences.unit is session" in err
    assert not store.exists()


@pytest.mark.parametrize(
    "named,key,wanted",
    [
        ("build: {split.validation_days: 9}\n", "split.validation_days", "9"),
        ("set: {sequences.session_max_length: 7}\n", "sequences.session_max_length", "7"),
    ],
)
def test_an_experiment_naming_build_settings_the_tables_were_not_built_with_exits_2_and_tracks_nothing(
    lakehouse, tmp_path, capsys, named, key, wanted
):
    spec = spec_from(
        tmp_path, f"name: b\nreference: a\nmetrics: [auc]\n{named}children: [{{name: a, model: sasrec}}]\n"
    )
    store, _, command = experiment_command(lakehouse, tmp_path, spec)
    assert main(command) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    built = load_config(None, SHORT_SPLITS).features.record()[key]
    version = snapshot_of(Lakehouse(None, str(lakehouse / "lh")), Tables.SEQUENCES).version
    assert err.endswith(
        f"experiment spec {spec}: child 'a' needs tables built with {key}={wanted}, but table "
        f"gold/sequences version {version} was built with {key}={built}: build as the spec's description says"
    )
    assert not store.exists()


def experiment_command(lakehouse, tmp_path, spec, epochs=1):
    """The tracking store, the --set values and the `experiment --spec` command of an `epochs`-epoch run."""
    store = tmp_path / "m.db"
    values = [v for v in settings(lakehouse, f"train.max_epochs={epochs}") if v != "--set"]
    values += [f"mlflow.tracking_uri=sqlite:///{store}", f"mlflow.artifact_root={tmp_path / 'art'}"]
    values += [f"train.checkpoint_dir={tmp_path / 'ck'}"]
    return store, values, [*[x for v in values for x in ("--set", v)], "experiment", "--spec", str(spec)]


def test_processes_given_runs_of_their_own_share_one_parent_and_the_last_to_finish_reports(
    lakehouse, tmp_path, capsys
):
    spec = spec_from(
        tmp_path,
        "name: shared\nreference: sasrec\nmetrics: [hr@10_pos]\nseeds: 2\nchildren:\n"
        "  - {name: sasrec, model: sasrec}\n  - {name: gru4rec, model: gru4rec}\n",
    )
    store, _, command = experiment_command(lakehouse, tmp_path, spec)
    assert main([*command, "--only", "gru4rec seed=1"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--only 'gru4rec seed=1': experiment spec" in err
    assert "its runs are 'sasrec seed=" in err
    client = MlflowClient(f"sqlite:///{store}")
    assert client.search_runs([e.experiment_id for e in client.search_experiments()]) == []

    def run_only(*names: str) -> dict:
        assert main([*command, "--json", *[x for n in names for x in ("--only", n)]]) == 0
        return json.loads(capsys.readouterr().out.strip().splitlines()[-1])

    def children_of(parent: str) -> dict[str, str]:
        found = client.search_runs(
            [client.get_run(parent).info.experiment_id],
            filter_string=f"tags.`mlflow.parentRunId` = '{parent}'",
        )
        names = [r.data.tags["downbeat.child"] for r in found]
        assert len(set(names)) == len(names)  # no run trained twice
        return {r.data.tags["downbeat.child"]: r.info.run_id for r in found}

    first = run_only("gru4rec")  # a child's name: each of its seeds
    parent, sasrec_runs = first["parent_run"], first["waiting"]
    assert [n.split(" seed=")[0] for n in sasrec_runs] == ["sasrec", "sasrec"]
    assert sorted(children_of(parent)) == sorted(n.replace("sasrec", "gru4rec") for n in sasrec_runs)
    assert client.get_run(parent).info.status == "RUNNING"
    assert "report.json" not in {a.path for a in client.list_artifacts(parent)}
    gru4rec_runs = [n.replace("sasrec", "gru4rec") for n in sasrec_runs]
    assert sorted(first["runs"]) == sorted(gru4rec_runs)  # a waiting process scores what finished
    second = run_only(sasrec_runs[1])  # a run's name
    assert (second["parent_run"], second["waiting"]) == (parent, sasrec_runs[:1])
    assert sorted(second["runs"]) == sorted([*gru4rec_runs, sasrec_runs[1]])
    assert "runs.json" in {a.path for a in client.list_artifacts(parent)}
    trained = children_of(parent)
    third = run_only("sasrec")  # the last run: its process reports every run
    assert third["parent_run"] == parent and len(children_of(parent)) == 4
    assert third["children"]["gru4rec"]["run_id"] == trained[sasrec_runs[0].replace("sasrec", "gru4rec")]
    assert third["children"]["gru4rec"]["seeds"] == 2
    assert client.get_run(parent).info.status == "FINISHED"
    assert "report.json" in {a.path for a in client.list_artifacts(parent)}
    # the first process's runs.json and the report merge into the report's own figures
    merged, _ = merged_report([("first", first), ("third", third)])
    assert merged["children"] == third["children"] and sorted(merged["runs"]) == sorted(third["runs"])

    # a store of its own trains the sasrec runs again: its runs.json and the first process's merge
    # (`claims`) into the figures of the one-store report, the same seeds giving the same models
    elsewhere = [
        f"mlflow.tracking_uri=sqlite:///{tmp_path / 'b.db'}",
        f"mlflow.artifact_root={tmp_path / 'b'}",
    ]
    elsewhere.append(f"train.checkpoint_dir={tmp_path / 'b-ck'}")
    other = [*command[:-3], *[x for v in elsewhere for x in ("--set", v)], *command[-3:], "--json"]
    assert main([*other, "--only", "sasrec"]) == 0
    part = tmp_path / "b.json"
    part.write_text(capsys.readouterr().out.strip().splitlines()[-1])
    (tmp_path / "a.json").write_text(json.dumps(first))
    claims = tmp_path / "claims.yaml"
    claims.write_text(
        "claims:\n  - {claim: c, paper: p, here: h, experiment: shared, child: gru4rec, metric: hr@10_pos}\n"
    )
    reports = ["--report", str(tmp_path / "a.json"), "--report", str(part)]
    assert main(["claims", "--claims", str(claims), *reports, "--merged", str(tmp_path / "m")]) == 0
    report = json.loads((tmp_path / "m" / "shared.runs.json").read_text())
    assert "runs" not in json.loads((tmp_path / "m" / "shared.report.json").read_text())
    assert report["runs"]["gru4rec seed=7"]["run_id"] == first["runs"]["gru4rec seed=7"]["run_id"]
    assert report["runs"]["sasrec seed=7"]["run_id"] != third["runs"]["sasrec seed=7"]["run_id"]
    without_ids = [{k: {**c, "run_id": None} for k, c in r["children"].items()} for r in (report, third)]
    assert without_ids[0] == without_ids[1]


def test_a_child_of_an_experiment_may_be_compared_with_another_child_than_the_reference(
    lakehouse, tmp_path, capsys
):
    # the build settings it names are the tables' (tests/jobs/small.py SHORT_SPLITS)
    spec = spec_from(
        tmp_path,
        "name: versus\nreference: sasrec\nmetrics: [hr@10_pos, ndcg@10_pos]\n"
        "build: {split.validation_days: 14}\nchildren:\n"
        "  - {name: sasrec, model: sasrec, set: {model.sasrec.beta: 0.0}}\n"
        "  - {name: gru4rec, model: gru4rec}\n"
        "  - {name: gru4rec infonce, model: gru4rec, set: {model.gru4rec.beta: 0.5}, versus: gru4rec}\n",
    )
    command = experiment_command(lakehouse, tmp_path, spec)[2]
    assert main([*command, "--json", "--bootstrap", "100"]) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    # the report carries every setting the build recorded: the build's configuration, not this one's
    assert out["build_settings"] == load_config(None, SHORT_SPLITS).features.record()
    table = out["children"]
    base, gru, contrasted = table["sasrec"], table["gru4rec"], table["gru4rec infonce"]
    assert (base["versus"], gru["versus"], contrasted["versus"]) == (None, "sasrec", "gru4rec")
    for metric in ("hr@10_pos", "ndcg@10_pos"):
        assert math.isclose(gru[metric]["diff"], gru[metric]["value"] - base[metric]["value"], abs_tol=1e-12)
        d = contrasted[metric]
        assert math.isclose(d["diff"], d["value"] - gru[metric]["value"], abs_tol=1e-12)


def test_a_child_under_several_seeds_reports_each_seeds_epochs_to_best_and_the_mean_of_its_logged_figures(
    lakehouse, tmp_path, capsys
):
    spec = spec_from(
        tmp_path,
        "name: seeded\nreference: sasrec\nseeds: 2\nmetrics: [hr@10_pos]\n"
        "run_metrics: [feedback_cos_skip_down]\nchildren:\n  - {name: sasrec, model: sasrec}\n",
    )
    store, _, command = experiment_command(lakehouse, tmp_path, spec, epochs=2)
    assert main([*command, "--json", "--bootstrap", "100"]) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    entry = out["children"]["sasrec"]
    client = MlflowClient(f"sqlite:///{store}")
    runs = client.search_runs(
        [client.get_run(out["parent_run"]).info.experiment_id],
        filter_string=f"tags.`mlflow.parentRunId` = '{out['parent_run']}'",
        order_by=["attributes.start_time ASC"],
    )
    assert len(runs) == 2 and entry["seeds"] == 2
    assert entry["best_epochs"] == [int(r.data.metrics["best_epoch"]) for r in runs]
    cosines = [r.data.metrics["feedback_cos_skip_down"] for r in runs]
    assert cosines[0] != cosines[1]  # two seeds, two models: the mean below is not either one
    assert math.isclose(entry["feedback_cos_skip_down"]["value"], sum(cosines) / 2, rel_tol=1e-9)
    report = Path(client.download_artifacts(out["parent_run"], "report.md")).read_text()
    row = next(line for line in report.splitlines() if line.startswith("| sasrec (reference) |"))
    assert row.split(" | ")[2] == " / ".join(str(e + 1) for e in entry["best_epochs"])
    assert "100 bootstrap resamples, seed 0; 2 training seed(s) per child." in report


def test_an_experiment_trains_its_children_under_one_parent_reports_them_paired_and_resumes(
    lakehouse, tmp_path, capsys, monkeypatch
):
    spec = spec_from(
        tmp_path,
        "name: tiny\nreference: sasrec beta=0.0\nmetrics: [paired_accuracy, hr@10_pos, skip_mrr@10]\n"
        "run_metrics: [feedback_cos_skip_down]\n"
        "grid: {model: [sasrec], model.sasrec.beta: [0.0, 0.5]}\n",
    )
    store, values, command = experiment_command(lakehouse, tmp_path, spec)
    assert main([*command, "--json", "--bootstrap", "200"]) == 0
    first = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    client = MlflowClient(f"sqlite:///{store}")
    parent = first["parent_run"]
    children = client.search_runs(
        [client.get_run(parent).info.experiment_id], filter_string=f"tags.`mlflow.parentRunId` = '{parent}'"
    )
    assert sorted(r.data.tags["downbeat.child"] for r in children) == ["sasrec beta=0.0", "sasrec beta=0.5"]
    assert {r.data.params["model.sasrec.beta"] for r in children} == {"0.0", "0.5"}
    assert client.search_registered_models() == []  # children are logged, never registered
    table = first["children"]
    reference, other = table["sasrec beta=0.0"], table["sasrec beta=0.5"]
    assert "diff" not in reference["paired_accuracy"]
    for metric in ("paired_accuracy", "hr@10_pos"):
        d = other[metric]
        assert math.isclose(d["diff"], d["value"] - reference[metric]["value"], abs_tol=1e-12)
        assert d["diff_low"] <= d["diff"] <= d["diff_high"]
    # each child's figure is what evaluating its logged model gives on its own
    capsys.readouterr()
    uri = f"runs:/{other['run_id']}/model"
    assert main([*[x for v in values for x in ("--set", v)], "evaluate", "--model-uri", uri, "--json"]) == 0
    alone = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert math.isclose(alone["paired_accuracy"], other["paired_accuracy"]["value"], abs_tol=1e-12)
    artifacts = {a.path for a in client.list_artifacts(parent)}
    assert {"report.md", "report.json", "spec.yaml", "validation_curves.png"} <= artifacts
    assert "paired_accuracy_vs_beta.png" in artifacts  # a numeric grid setting: a plot per metric
    report = Path(client.download_artifacts(parent, "report.md")).read_text()
    assert "| sasrec beta=0.0 (reference) | sasrec |" in report and "| sasrec beta=0.5 | sasrec |" in report
    header = next(line for line in report.splitlines() if line.startswith("| child |"))
    assert header.endswith("| skip_mrr@10 | feedback_cos_skip_down |")
    logged = client.get_run(other["run_id"]).data.metrics["feedback_cos_skip_down"]
    assert other["feedback_cos_skip_down"]["value"] == logged and -1.0 <= logged <= 1.0

    # an interrupted experiment: one child did not finish (stopped before its first checkpoint); the
    # rerun trains that one alone, from its first epoch
    client.set_terminated(other["run_id"], status="FAILED")
    shutil.rmtree(tmp_path / "ck" / other["run_id"])
    assert main([*command, "--json", "--bootstrap", "200"]) == 0
    second = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert second["parent_run"] == parent
    assert second["children"]["sasrec beta=0.0"]["run_id"] == reference["run_id"]
    assert second["children"]["sasrec beta=0.5"]["run_id"] != other["run_id"]
    # same seed, same data: the retrained child and so the whole table are the same
    assert {k: v for k, v in second["children"]["sasrec beta=0.5"].items() if k != "run_id"} == {
        k: v for k, v in other.items() if k != "run_id"
    }
    # a finished experiment reruns nothing (the job's run(), in this process)
    third = experiment.run(str(spec), None, values, bootstrap=200)
    assert json.loads(json.dumps({**third.summary, "parent_run": third.parent}, sort_keys=True)) == second
    assert client.get_run(parent).info.status == "FINISHED"

    # a build commits new table versions while a child trains: that child, and every child's score,
    # stay on the versions the experiment started with
    client.set_terminated(second["children"]["sasrec beta=0.5"]["run_id"], status="FAILED")
    shutil.rmtree(tmp_path / "ck" / second["children"]["sasrec beta=0.5"]["run_id"])  # trained again
    real_run = training.run
    pinned = ("gold/sequences", "gold/eval_pairs")
    before = {t: Lakehouse(None, str(lakehouse / "lh")).version(t) for t in pinned}

    def run_during_a_build(*args, **kwargs):
        for table in before:
            table_now = DeltaTable(str(lakehouse / "lh" / table))
            table_now.alter.set_table_properties({"delta.appendOnly": "false"})  # a commit, same rows
        return real_run(*args, **kwargs)

    monkeypatch.setattr(training, "run", run_during_a_build)
    assert main([*command, "--json", "--bootstrap", "200"]) == 0
    fourth = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert {t: Lakehouse(None, str(lakehouse / "lh")).version(t) for t in before} == {
        t: v + 1 for t, v in before.items()
    }
    retrained = client.get_run(fourth["children"]["sasrec beta=0.5"]["run_id"]).data.params
    trained_on = {t: retrained[f"table.{t}"].rsplit("@", 1)[1] for t in before}
    assert trained_on == {t: str(v) for t, v in before.items()}
    assert {k: v for k, v in fourth["children"]["sasrec beta=0.5"].items() if k != "run_id"} == {
        k: v for k, v in other.items() if k != "run_id"
    }


def test_a_child_stopped_part_way_resumes_in_its_own_run_from_its_last_checkpoint(
    lakehouse, tmp_path, capsys
):
    spec = spec_from(
        tmp_path,
        "name: stopped\nreference: sasrec\nmetrics: [hr@10_pos]\n"
        "children:\n  - {name: sasrec, model: sasrec}\n",
    )
    store, _, command = experiment_command(lakehouse, tmp_path, spec, epochs=3)
    command = [*command, "--json", "--bootstrap", "100"]
    assert main(command) == 0
    whole = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    run_id = whole["children"]["sasrec"]["run_id"]
    client = MlflowClient(f"sqlite:///{store}")
    history = [m.value for m in client.get_metric_history(run_id, "train_loss")]
    # what a kill during the third epoch leaves of the run: not finished, two epochs saved, no
    # model (here its third epoch's metrics stay logged: the resumed run logs that epoch again)
    experiment_id = client.get_run(run_id).info.experiment_id
    client.set_terminated(run_id, status="FAILED")
    (tmp_path / "ck" / run_id / "epoch-003.pt").unlink()
    for model in client.search_logged_models([experiment_id]):
        client.delete_logged_model(model.model_id)
    # and a later attempt of the same child that died before its first checkpoint
    tags = {"mlflow.parentRunId": whole["parent_run"], "downbeat.child": "sasrec"}
    later = client.create_run(experiment_id, tags=tags).info.run_id
    client.set_terminated(later, status="KILLED")

    assert main(command) == 0
    resumed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert resumed["parent_run"] == whole["parent_run"]
    # the run with a checkpoint resumed, not a new one and not the later attempt without one
    assert resumed["children"]["sasrec"]["run_id"] == run_id
    assert client.get_run(run_id).info.status == "FINISHED"
    assert client.get_run(later).info.status == "KILLED"
    # only the third epoch trained again, to the loss of the run never stopped
    again = [m.value for m in client.get_metric_history(run_id, "train_loss")]
    assert len(history) == 3 and again == [*history, history[2]]
    assert resumed == whole  # the same test figures: resumed, it ends where it would have
