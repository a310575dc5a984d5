"""One bad row must never break the lakehouse: times outside the plausible window and values past
their column's type are quarantined line by line, and the build that follows succeeds on both
engines."""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from pyspark.sql import functions as F

from downbeat.jobs import build, ingest
from downbeat.jobs.cli import main
from downbeat.jobs.config import PROJECT_ROOT, load_config
from downbeat.pipelines import schemas as S
from downbeat.pipelines.errors import ConfigError
from downbeat.pipelines.lakehouse import Lakehouse
from tests.jobs.small import SHORT_SPLITS, TINY_TRAINING, own_copy, store_settings

ML_1M = Path(__file__).resolve().parents[3] / "shared" / "datasets" / "movielens_1m_part" / "ratings.dat"


def config(root: Path, *more: str):
    return load_config(None, [f"lakehouse.root={root}", "spark.log_level=ERROR", *more])


def events_csv(path: Path, bad: list[str]) -> Path:
    """Three users' plays over two days, with `bad` lines mixed in after the header."""
    lines = ["user_id,ts,track_id,feedback"]
    start = dt.datetime(2024, 3, 1, 8, 0)
    for u in range(3):
        for i in range(30):
            ts = start + dt.timedelta(hours=2 * i, minutes=u)
            lines.append(f"u{u},{ts:%Y-%m-%dT%H:%M:%SZ},t{(i * (u + 1)) % 7},play")
    lines[5:5] = bad
    path.write_text("\n".join(lines) + "\n")
    return path


def quarantined(spark, cfg) -> dict[int, str]:
    lakehouse = Lakehouse.from_settings(spark, cfg.lakehouse, cfg.delta)
    return {r["line"]: r["reason"] for r in lakehouse.read("bronze/quarantine").collect()}


def refused_ingest(tmp_path: Path, capsys, path: Path) -> str:
    """`downbeat ingest --format events --input PATH` into tmp_path/lh: it exits 2; its last line."""
    capsys.readouterr()
    assert (
        main(
            [
                "--set",
                f"lakehouse.root={tmp_path / 'lh'}",
                "ingest",
                "--format",
                "events",
                "--input",
                str(path),
            ]
        )
        == 2
    )
    return capsys.readouterr().err.strip().splitlines()[-1]


def latest_event(spark, cfg) -> dt.datetime:
    """The latest bronze event's time, in UTC (epoch microseconds: no zone of this process)."""
    lakehouse = Lakehouse.from_settings(spark, cfg.lakehouse, cfg.delta)
    micros = lakehouse.read("bronze/events").select(F.max(F.unix_micros(S.TS))).first()[0]
    return dt.datetime(1970, 1, 1) + dt.timedelta(microseconds=micros)


OUT_OF_WINDOW = (
    "10000-01-01T00:00:00Z",
    "+294247-01-01T00:00:00Z",
    "0001-01-01T00:00:00Z",
    "1969-12-31T23:59:59Z",
    "2100-01-01T00:00:00Z",
    "9999-12-31T23:59:59.999999Z",
)


def test_each_event_outside_the_window_is_quarantined_on_its_line_and_the_build_succeeds(spark, tmp_path):
    # six bad lines in one file (lines 6-11): each is refused on its own line, none takes the file with it
    bad = [f"u0,{ts},t1,play" for ts in OUT_OF_WINDOW]
    cfg = config(tmp_path / "lh")
    result = ingest.run(spark, cfg, "events", [str(events_csv(tmp_path / "log.csv", bad))])

    assert (result.accepted, result.rejected) == (90, len(bad))
    reasons = quarantined(spark, cfg)
    assert sorted(reasons) == list(range(6, 6 + len(bad)))
    for line, ts in enumerate(OUT_OF_WINDOW, start=6):
        assert reasons[line].startswith("ts_out_of_range:"), (ts, reasons[line])
    assert latest_event(spark, cfg) == dt.datetime(2024, 3, 3, 18, 2)
    build.run(spark, cfg)  # and the lakehouse still builds


def test_the_window_is_a_setting_checked_when_the_config_loads(spark, tmp_path):
    cfg = config(tmp_path / "lh", "ingest.min_ts=2024-03-02")
    result = ingest.run(spark, cfg, "events", [str(events_csv(tmp_path / "log.csv", []))])

    assert result.rejected == 8 * 3  # the first day's plays, every two hours from 08:00, of each user
    assert set(quarantined(spark, cfg).values()) == {
        "ts_out_of_range: outside ingest.min_ts..ingest.max_ts (2024-03-02..2100-01-01)"
    }
    for bad, message in [
        (
            ["ingest.min_ts=yesterday"],
            "config key 'ingest.min_ts': 'yesterday' is not an ISO-8601 date or time",
        ),
        (["ingest.max_ts=1960-01-01"], "config key 'ingest.max_ts': 1960-01-01 is not after ingest.min_ts"),
        (["ingest.max_ts=10000-01-01"], "config key 'ingest.max_ts': '10000-01-01' is not an ISO-8601"),
    ]:
        with pytest.raises(ConfigError, match=message):
            config(tmp_path / "lh", *bad)


@pytest.mark.parametrize(
    ("seconds", "reason"),
    [
        ("1000000000000", "ts_out_of_range:"),  # milliseconds where MovieLens has seconds
        ("9000000000000000000", "ts_out_of_range:"),  # fits int64; its microseconds do not
        ("99999999999999999999", "value_out_of_range: timestamp '99999999999999999999'"),
    ],
)
def test_a_movielens_time_past_the_window_or_int64_is_quarantined(spark, tmp_path, seconds, reason):
    ratings = tmp_path / "ratings.dat"
    ratings.write_text(f"1::10::5::978300760\n1::11::2::{seconds}\n2::10::4::978300761\n")
    cfg = config(tmp_path / "lh")
    result = ingest.run(spark, cfg, "movielens", [str(ratings)])

    assert (result.accepted, result.rejected) == (2, 1)
    assert quarantined(spark, cfg)[2].startswith(reason)


def test_an_mssd_session_position_past_its_type_is_quarantined(spark, tmp_path):
    log = tmp_path / "log.csv"
    head = "session_id,session_position,session_length,track_id_clean,skip_1,skip_2,skip_3,hour_of_day,date"
    rows = [f"s1,{p},3,t{p},false,false,false,10,2018-07-15" for p in (1, 2, 3)]
    log.write_text(
        "\n".join(
            [
                head,
                *rows,
                "s2,99999999999999,3,t9,false,true,false,10,2018-07-15",
                "s3,2147483647,3,t8,false,true,false,10,2018-07-15",
            ]
        )
        + "\n"
    )
    cfg = config(tmp_path / "lh")
    result = ingest.run(spark, cfg, "mssd", [str(log)])

    assert (result.accepted, result.rejected) == (3, 2)
    reasons = quarantined(spark, cfg)
    assert reasons[5].startswith("value_out_of_range: session_position '99999999999999'")
    assert reasons[6].startswith("value_out_of_range: session_position '2147483647'")


@pytest.mark.skipif(not ML_1M.is_file(), reason="needs ../shared/datasets/movielens_1m_part")
@pytest.mark.parametrize("engine", ["spark", "delta-rs"])
def test_a_real_file_with_a_year_10000_line_and_a_1e12_time_builds_on_each_engine(spark, tmp_path, engine):
    head = ML_1M.read_text(encoding="latin-1").splitlines()[:3000]
    mixed = [
        *head[:100],
        "1::1193::5::1000000000000",
        *head[100:2000],
        "2::1193::1::253402300800",
        *head[2000:],
    ]
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "ratings.dat").write_text("\n".join(mixed) + "\n", encoding="latin-1")
    cfg = config(tmp_path / "lh", f"delta.engine={engine}", "split.cutoff_quantile=0.9")
    result = ingest.run(spark, cfg, "movielens", [str(tmp_path / "in" / "ratings.dat")])

    assert (result.accepted, result.rejected) == (3000, 2)
    assert sorted(quarantined(spark, cfg)) == [101, 2002]
    built = build.run(spark, cfg)
    # the quarantined times moved nothing: the 90% cut-off lies within ML-1M's own years
    assert built.cutoff_ts is not None and 2000 <= built.cutoff_ts.year <= 2003
    assert built.versions["gold/eval_next"] == 0
    shutil.rmtree(tmp_path / "lh")


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ("train.batch_size=0", "config key 'train.batch_size' must be at least 1, got 0 (in --set)"),
        ("train.max_epochs=0", "config key 'train.max_epochs' must be at least 1, got 0 (in --set)"),
        ("model.dim=0", "config key 'model.dim' must be at least 1, got 0 (in --set)"),
        ("model.feedforward=0", "config key 'model.feedforward' must be at least 1, got 0 (in --set)"),
        (
            "model.activation=tanh",
            "config key 'model.activation' must be one of gelu, relu, none, got 'tanh' (in --set)",
        ),
        ("model.heads=3", "config key 'model.heads' must divide model.dim (64), got 3 (in --set)"),
        (
            "optim.learning_rate=.nan",
            "config key 'optim.learning_rate' must be a finite number, got nan (in --set)",
        ),
        (
            "spark.shuffle_partitions=0",
            "config key 'spark.shuffle_partitions' must be at least 1, got 0 (in --set)",
        ),
        (
            "spark.driver_memory=abc",
            "config key 'spark.driver_memory' must be a size Spark reads (e.g. 4g, 512m)",
        ),
        ("spark.master=bogus", "config key 'spark.master' must be local[N], local-cluster[N,C,M], yarn or"),
        (
            "split.cutoff_date=2024-13-45",
            "config key 'split.cutoff_date' must be YYYY-MM-DD, got '2024-13-45'",
        ),
    ],
)
def test_a_setting_out_of_range_exits_2_before_spark_or_mlflow_start(tmp_path, capsys, setting, message):
    store = tmp_path / "mlruns.db"
    common = ["--set", f"mlflow.tracking_uri=sqlite:///{store}", "--set", f"lakehouse.root={tmp_path / 'lh'}"]
    capsys.readouterr()

    assert main([*common, "--set", setting, "train", "--model", "baseline"]) == 2
    assert capsys.readouterr().err.strip().splitlines()[-1].startswith(f"downbeat: error: {message}")
    assert not store.exists() and not (tmp_path / "lh").exists()


def test_a_config_file_that_is_not_utf8_or_holds_an_impossible_date_is_named(tmp_path, capsys):
    for name, body, message in [
        ("latin.yaml", b"extends: base.yaml\n# caf\xe9\n", "not UTF-8 text (byte 24)"),
        (
            "date.yaml",
            b"extends: base.yaml\nsplit:\n  cutoff_date: 2024-13-45\n",
            "a value is not a valid date (month must be in 1..12)",
        ),
    ]:
        shutil.copy(PROJECT_ROOT / "conf" / "base.yaml", tmp_path / "base.yaml")
        path = tmp_path / name
        path.write_bytes(body)
        assert main(["--conf", str(path), "config", "show"]) == 2
        assert (
            capsys.readouterr().err.strip().splitlines()[-1]
            == f"downbeat: error: config file {path}: {message}"
        )


def test_a_rebuild_range_outside_the_window_exits_2(spark, tmp_path, capsys):
    capsys.readouterr()
    args = [
        "--set",
        f"lakehouse.root={tmp_path / 'lh'}",
        "build",
        "--from-date",
        "9999-12-31",
        "--to-date",
        "9999-12-31",
    ]

    assert main(args) == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        "downbeat: error: --from-date 9999-12-31 and --to-date 9999-12-31 must lie in "
        "ingest.min_ts..ingest.max_ts (1970-01-01..2099-12-31): no event outside it is in the lakehouse"
    )


@pytest.mark.integration  # minutes: Spark in a process of its own, or a build on each engine
@pytest.mark.parametrize(("signum", "group"), [(signal.SIGINT, True), (signal.SIGTERM, False)])
def test_a_build_interrupted_mid_write_ends_in_one_line_and_128_plus_the_signal(
    spark, tmp_path, signum, group
):
    """Ctrl-C in a terminal reaches the whole process group (Spark's JVM too); a scheduler's SIGTERM
    reaches the driver alone. Either way: one line, exit 130 / 143, every table at a committed version."""
    cfg = config(tmp_path / "lh")
    ingest.run(spark, cfg, "events", [str(events_csv(tmp_path / "log.csv", []))])
    lakehouse = Lakehouse.from_settings(spark, cfg.lakehouse, cfg.delta)
    before = lakehouse.version("bronze/events")
    out, err = tmp_path / "build.out", tmp_path / "build.err"
    command = [
        sys.executable,
        "-m",
        "downbeat.jobs.cli",
        "--set",
        f"lakehouse.root={tmp_path / 'lh'}",
        "build",
    ]
    with out.open("w") as stdout, err.open("w") as stderr:
        process = subprocess.Popen(command, stdout=stdout, stderr=stderr, start_new_session=True)
    try:
        deadline = time.monotonic() + 240
        while "writing data files" not in err.read_text() and process.poll() is None:
            assert time.monotonic() < deadline, err.read_text()[-3000:]
            time.sleep(0.2)
        assert process.poll() is None, err.read_text()[-3000:]  # still writing when the signal comes
        (os.killpg if group else os.kill)(process.pid, signum)
        code = process.wait(timeout=120)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    lines = err.read_text().strip().splitlines()
    assert code == 128 + signum, lines[-20:]
    name = signal.Signals(signum).name
    assert not any("Traceback" in line for line in lines), lines[-20:]
    assert lines[-1] == f"downbeat: interrupted ({name}): every table is at its last committed version"
    assert lakehouse.version("bronze/events") == before
    for table in ("silver/plays", *build.GOLD):
        if lakehouse.exists(table):
            lakehouse.read(table).count()  # a committed version, whole


@pytest.mark.integration  # minutes: Spark in a process of its own, or a build on each engine
def test_train_stopped_by_sigterm_leaves_no_run_running_and_registers_nothing(built_lakehouse, tmp_path):
    """A scheduler's SIGTERM while the network trains: one line, exit 143, the MLflow run ended
    (not RUNNING), no model version registered, no worker process left behind."""
    import mlflow

    root = own_copy(built_lakehouse, tmp_path)
    store = root / "store"
    store.mkdir()
    values = [*store_settings(root / "lh", store), *TINY_TRAINING]
    values += ["train.max_epochs=100000", "train.patience=100000"]  # training at the signal
    command = [sys.executable, "-m", "downbeat.jobs.cli"]
    command += [x for v in values for x in ("--set", v)] + ["train", "--model", "baseline"]
    err = tmp_path / "train.err"
    with err.open("w") as stderr:
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=stderr, start_new_session=True)
    try:
        deadline = time.monotonic() + 300
        while "epoch 2:" not in err.read_text() and process.poll() is None:  # inside the epochs
            assert time.monotonic() < deadline, err.read_text()[-3000:]
            time.sleep(0.2)
        assert process.poll() is None, err.read_text()[-3000:]
        os.kill(process.pid, signal.SIGTERM)
        code = process.wait(timeout=120)
        time.sleep(2)
        left = subprocess.run(
            ["pgrep", "-g", str(process.pid)], capture_output=True, text=True
        ).stdout.split()
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    lines = err.read_text().strip().splitlines()
    assert code == 143, lines[-20:]
    assert lines[-1] == "downbeat: interrupted (SIGTERM): every table is at its last committed version"
    assert left == [], f"processes of the job's group still running: {left}"
    client = mlflow.MlflowClient(f"sqlite:///{store / 'mlruns.db'}")
    runs = [r for e in client.search_experiments() for r in client.search_runs([e.experiment_id])]
    statuses = [r.info.status for r in runs]
    assert runs and all(s in ("FAILED", "KILLED") for s in statuses), (statuses, lines[-20:])
    assert client.search_model_versions() == []


def test_a_file_whose_name_holds_glob_characters_is_read_as_named(spark, tmp_path):
    named = events_csv(tmp_path / "a[1].csv", [])
    events_csv(tmp_path / "a1.csv", ["u9,2024-03-01T09:00:00Z,t1,play"])  # what the name matches as a pattern
    cfg = config(tmp_path / "lh")
    result = ingest.run(spark, cfg, "events", [str(named)])

    assert (result.files, result.accepted, result.rejected) == ((str(named),), 90, 0)
    lakehouse = Lakehouse.from_settings(spark, cfg.lakehouse, cfg.delta)
    assert {r[0] for r in lakehouse.read("bronze/events").select(S.USER_ID).distinct().collect()} == {
        "u0",
        "u1",
        "u2",
    }


@pytest.mark.parametrize("name", ["_part.csv", ".hidden.csv"])
def test_a_hidden_file_named_on_the_command_line_is_refused_not_skipped(spark, tmp_path, capsys, name):
    path = events_csv(tmp_path / name, [])

    assert refused_ingest(tmp_path, capsys, path) == (
        f"downbeat: error: input file {path}: Spark's readers skip names that start with '_' or '.' "
        "(or end in .crc); rename it to ingest it"
    )
    assert not (tmp_path / "lh").exists()


@pytest.mark.parametrize(
    ("name", "body", "message"),
    [
        (
            "twice.csv",
            b"user_id,ts,track_id,user_id\nu1,2024-03-01T09:00:00Z,t1,u1\n",
            "header names column(s) user_id more than once",
        ),
        (
            "junk.parquet",
            b"PAR1" + bytes(range(256)) * 4,
            "not a readable Parquet file (Parquet magic bytes not found",
        ),
    ],
)
def test_a_bad_header_or_a_file_that_is_no_parquet_is_one_line_and_exit_2(
    spark, tmp_path, capsys, name, body, message
):
    path = tmp_path / name
    path.write_bytes(body)

    assert refused_ingest(tmp_path, capsys, path).startswith(f"downbeat: error: input file {path}: {message}")
    assert not (tmp_path / "lh").exists()


def test_gold_tables_of_two_builds_are_refused_before_any_mlflow_run(
    spark, built_lakehouse, tmp_path, capsys
):
    """A build stopped between two of its gold commits leaves a mix: here gold/eval_pairs is
    rewritten in a batch of its own, as a second build that committed only that table would."""
    root = own_copy(built_lakehouse, tmp_path)
    lakehouse = Lakehouse(spark, str(root / "lh"))
    with lakehouse.transaction() as tx:
        tx.stage(lakehouse.read("gold/eval_pairs"), "gold/eval_pairs", operation="overwrite")
    store = tmp_path / "store"
    common = [
        x for s in (*store_settings(root / "lh", store), *SHORT_SPLITS, *TINY_TRAINING) for x in ("--set", s)
    ]
    capsys.readouterr()

    for command in (
        ["train", "--model", "baseline"],
        ["evaluate", "--model-uri", "models:/downbeat@champion"],
    ):
        assert main([*common, *command]) == 2
        line = capsys.readouterr().err.strip().splitlines()[-1]
        assert line.startswith("downbeat: error: tables gold/") and "come from different builds" in line, line
        assert "gold/eval_pairs" in line and line.endswith("run `downbeat build`")
    assert not (store / "mlruns.db").exists()


@pytest.mark.integration  # minutes: Spark in a process of its own, or a build on each engine
@pytest.mark.parametrize("engine", ["spark", "delta-rs"])
def test_a_bad_ingest_is_rolled_back_with_maintain_restore_and_the_rebuild_is_as_before_it(
    spark, tmp_path, capsys, engine
):
    common = ["--set", f"lakehouse.root={tmp_path / 'lh'}", "--set", f"delta.engine={engine}"]
    good = events_csv(tmp_path / "good.csv", [])
    (tmp_path / "bad").mkdir()
    bad = events_csv(
        tmp_path / "bad" / "good.csv", ["u7,2024-03-02T10:00:00Z,t3,play"]
    )  # another day's export
    assert main([*common, "ingest", "--format", "events", "--input", str(good)]) == 0
    assert main([*common, "build"]) == 0
    lakehouse = Lakehouse(spark, str(tmp_path / "lh"))
    built = {
        t: sorted(lakehouse.read(t).collect()) for t in ("silver/plays", "gold/sequences", "gold/eval_next")
    }
    assert main([*common, "ingest", "--format", "events", "--input", str(bad)]) == 0
    assert lakehouse.rows("bronze/events") == 91
    capsys.readouterr()

    assert main([*common, "maintain", "--restore", "bronze/events", "--version", "0"]) == 0
    assert main([*common, "maintain", "--history", "bronze/events", "--json"]) == 0
    history = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["history"]
    assert [e["version"] for e in history] == [2, 1, 0]
    assert history[0]["downbeat.restored_from"] == "0" and history[0]["downbeat.operation"] == "merge"
    assert lakehouse.rows("bronze/events") == 90
    assert main([*common, "build"]) == 0
    assert {t: sorted(lakehouse.read(t).collect()) for t in built} == built
    assert main([*common, "maintain", "--restore", "bronze/events", "--version", "3"]) == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        "downbeat: error: restore bronze/events to version 3: its versions are 0..2; name an earlier one"
    )


def test_a_build_whose_latest_play_is_in_the_future_says_so_in_one_line(spark, tmp_path, caplog):
    cfg = config(tmp_path / "lh")
    ingest.run(
        spark, cfg, "events", [str(events_csv(tmp_path / "log.csv", ["u0,2099-06-01T00:00:00Z,t1,play"]))]
    )
    with caplog.at_level("WARNING", logger="downbeat.build"):
        result = build.run(spark, cfg)

    warned = [
        r.getMessage() for r in caplog.records if r.name == "downbeat.build" and r.levelname == "WARNING"
    ]
    assert len(warned) == 1 and warned[0].startswith("the latest play (2099-06-01T00:00:00+00:00) lies after")
    assert result.cutoff_ts is not None and result.cutoff_ts.year == 2099  # the tables follow the data


def test_a_lakehouse_on_s3_without_credentials_is_one_line_and_exit_2(tmp_path, capsys, monkeypatch):
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")  # no instance role to ask for either
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    store = tmp_path / "mlruns.db"
    capsys.readouterr()

    args = [
        "--set",
        "lakehouse.root=s3://no-such-bucket/lh",
        "--set",
        f"mlflow.tracking_uri=sqlite:///{store}",
    ]
    assert main([*args, "evaluate", "--model-uri", "models:/downbeat@champion"]) == 2
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert line.startswith(
        "downbeat: error: table gold/eval_pairs at s3://no-such-bucket/lh/gold/eval_pairs: "
        "the object store refused access ("
    ), line
    assert "\x1b[" not in line and line.endswith(
        "check the credentials (AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, "
        "a profile or an instance role) and lakehouse.root"
    )
    assert not store.exists()


def test_quoted_csv_fields_hold_the_delimiter_in_every_csv_format(spark, tmp_path):
    log = tmp_path / "log.csv"
    log.write_text(
        "session_id,session_position,session_length,track_id_clean,skip_1,skip_2,skip_3,hour_of_day,date,context_type\n"
        's1,1,2,t1,false,false,false,10,2018-07-15,"radio, morning"\n'
        's1,2,2,"t,2",false,true,false,10,2018-07-15,catalog\n'
    )
    piki = tmp_path / "piki.csv"
    piki.write_text(
        "id,liked,personalized,song_id,spotify_popularity,timestamp,user_id\n"
        '0,1,1,"32,192",87,2019-06-21 01:04:23,37\n'
    )
    cfg = config(tmp_path / "lh")
    assert ingest.run(spark, cfg, "mssd", [str(log)]).accepted == 2
    assert ingest.run(spark, cfg, "piki", [str(piki)]).accepted == 1

    lakehouse = Lakehouse.from_settings(spark, cfg.lakehouse, cfg.delta)
    rows = {(r[S.TRACK_ID], r[S.STATION_ID]) for r in lakehouse.read("bronze/events").collect()}
    assert rows == {("mssd:t1", "mssd:radio, morning"), ("mssd:t,2", "mssd:catalog"), ("piki:32,192", None)}
