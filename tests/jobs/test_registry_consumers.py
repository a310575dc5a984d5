"""What a consumer of the registry gets: batch recommendations in gold/recommendations, a model that
loads where downbeat is not installed, a served endpoint, and a described registry version."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import SimpleNamespace

import mlflow
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from deltalake import DeltaTable, write_deltalake
from mlflow.tracking import MlflowClient

from downbeat.jobs import recommend as recommend_job
from downbeat.jobs.cli import main
from downbeat.jobs.config import load_config
from downbeat.models.contract import FEEDBACK_IDS
from downbeat.models.serving import (
    CANDIDATES,
    HISTORY_FEEDBACK,
    HISTORY_STATIONS,
    HISTORY_TRACKS,
    SCORES,
    STATION,
)
from tests.jobs.small import TINY_TRAINING, own_copy, store_settings
from tests.processes import free_port, run_command, stop_group

REPO = Path(__file__).resolve().parents[2]
TABLE = "gold/recommendations"
CHAMPION = "models:/downbeat@champion"


def table_frame(lh: Path, table: str) -> pd.DataFrame:
    """A table's current rows, read by delta-rs's file list (not through downbeat)."""
    files = DeltaTable(str(lh / table)).file_uris()
    return pd.concat([pq.read_table(f.removeprefix("file://")).to_pandas() for f in files], ignore_index=True)


def version_of(lh: Path, table: str) -> int:
    return int(DeltaTable(str(lh / table)).version())


@pytest.fixture(scope="module")
def consumer(built_lakehouse, tmp_path_factory):
    """This module's copy of the session's lakehouse, with a table of users none of whom played
    (gold/ghosts), and a registry of its own whose champion is a tiny hybrid, whose top 3 are in
    gold/recommendations (so a refused run can be seen to leave a table). Tests that write
    recommendations take a copy of their own (`writable`)."""
    root = own_copy(built_lakehouse, tmp_path_factory.mktemp("consumers"))
    write_deltalake(str(root / "lh" / "gold/ghosts"), pa.table({"user_id": ["nobody", "no-one"]}))
    store = root / "consumers"
    values = [*store_settings(root / "lh", store), *TINY_TRAINING]
    options = [x for v in values for x in ("--set", v)]
    store.mkdir()
    assert main([*options, "train", "--model", "hybrid"]) == 0
    tracking = f"sqlite:///{store / 'mlruns.db'}"
    mlflow.set_tracking_uri(tracking)
    champion = MlflowClient(tracking).get_model_version_by_alias("downbeat", "champion")
    assert main([*options, "recommend", "--model-uri", "models:/downbeat@champion", "--top-k", "3"]) == 0
    return SimpleNamespace(
        root=root, lh=root / "lh", store=store, options=options, tracking=tracking, champion=champion
    )


@pytest.fixture(autouse=True)
def consumers_registry(consumer):
    """mlflow's process-wide tracking URI is this module's registry in each of its tests, whatever
    a test of another module set before."""
    mlflow.set_tracking_uri(consumer.tracking)


@pytest.fixture
def writable(consumer, tmp_path):
    """The consumer with a lakehouse of this test's own (a copy of the module's, which no test
    writes), so a test's recommendations never meet another's."""
    lh = tmp_path / "lh"
    shutil.copytree(consumer.lh, lh)
    options = [*consumer.options, "--set", f"lakehouse.root={lh}"]
    return SimpleNamespace(**{**vars(consumer), "lh": lh, "options": options})


def recommend(consumer, capsys, *args: str) -> tuple[int, list[str], str]:
    code = main([*consumer.options, "recommend", *args])
    captured = capsys.readouterr()
    return code, captured.out.strip().splitlines(), captured.err


def expected_top(consumer, k: int) -> pd.DataFrame:
    """The top k of every user, computed here from silver/plays with pandas and the logged model's
    own predict() over the whole catalog: the last plays by (ts, event_id), the last play's station
    as the query, every track the user rated down left out, best first (ties by track idx)."""
    plays = table_frame(consumer.lh, "silver/plays").sort_values(["user_id", "ts", "event_id"])
    tracks = table_frame(consumer.lh, "gold/tracks")
    stations = table_frame(consumer.lh, "gold/stations")
    track_idx = dict(zip(tracks.track_id, tracks.track_idx, strict=True))
    track_id = dict(zip(tracks.track_idx, tracks.track_id, strict=True))
    station_idx = dict(zip(stations.station_id, stations.station_idx, strict=True))
    model = mlflow.pyfunc.load_model("models:/downbeat@champion")
    width = int(model.metadata.metadata["max_length"]) - 1
    catalog = np.arange(1, len(tracks) + 1)
    users, requests, downs = [], [], []
    for user, rows in plays.groupby("user_id", sort=True):
        recent = rows.tail(width)
        stations_of = [station_idx.get(s, 0) if s is not None else 0 for s in recent.station_id]
        users.append(user)
        requests.append(
            {
                HISTORY_TRACKS: np.array([track_idx[t] for t in recent.track_id]),
                HISTORY_STATIONS: np.array(stations_of),
                HISTORY_FEEDBACK: np.array([FEEDBACK_IDS[f] for f in recent.feedback]),
                STATION: stations_of[-1],
                CANDIDATES: catalog,
            }
        )
        downs.append({track_idx[t] for t in rows.track_id[rows.feedback == "down"]})
    scored = model.predict(pd.DataFrame(requests))
    out = []
    for user, scores, down in zip(users, scored[SCORES], downs, strict=True):
        order = [i + 1 for i in np.argsort(-scores, kind="stable") if i + 1 not in down][:k]
        out += [(user, r + 1, track_id[i], float(scores[i - 1])) for r, i in enumerate(order)]
    return pd.DataFrame(out, columns=["user_id", "rank", "track_id", "score"])


def test_recommend_ranks_the_whole_catalog_as_the_logged_model_scores_it_never_a_down_rated_track(
    writable, capsys
):
    consumer = writable
    code, out, err = recommend(consumer, capsys, "--model-uri", "models:/downbeat@champion", "--top-k", "7")
    assert code == 0, err[-2000:]
    summary = json.loads(out[-1]) if out[-1].startswith("{") else None
    assert summary is None  # no --json: one line for a person
    assert re.match(rf"recommend: {TABLE} version \d+: top 7 of downbeat version \d+ for \d+ users", out[-1])
    rows = table_frame(consumer.lh, TABLE)
    version = str(consumer.champion.version)
    assert set(rows.model_name) == {"downbeat"} and set(rows.model_version) == {version}
    assert set(rows.model_run_id) == {consumer.champion.run_id}
    assert set(rows.history_version) == {version_of(consumer.lh, "silver/plays")}
    expected = expected_top(consumer, 7)
    got = rows.sort_values(["user_id", "rank"]).reset_index(drop=True)
    assert len(got) == len(expected) == 7 * expected.user_id.nunique()
    assert list(got.user_id) == list(expected.user_id) and list(got["rank"]) == list(expected["rank"])
    assert np.allclose(got.score, expected.score, rtol=1e-4, atol=1e-5)
    # the same tracks at the same ranks; two whose scores differ by float rounding alone (the job
    # scores by one matrix product, predict() per candidate) may trade places
    swapped = got.track_id.to_numpy() != expected.track_id.to_numpy()
    assert swapped.sum() <= 0.02 * len(got), got[swapped].head()
    assert np.allclose(got.score[swapped], expected.score[swapped], rtol=0, atol=1e-5)
    plays = table_frame(consumer.lh, "silver/plays")
    downs = plays[plays.feedback == "down"][["user_id", "track_id"]]
    assert len(downs) > 0 and rows.merge(downs, on=["user_id", "track_id"]).empty


def test_recommend_is_idempotent_per_model_version_and_replaces_only_its_own_rows(writable, capsys):
    consumer = writable
    uri = "models:/downbeat@champion"
    code, out, err = recommend(consumer, capsys, "--model-uri", uri, "--top-k", "4", "--json")
    assert code == 0, err[-2000:]
    first = json.loads(out[-1])
    assert first["written"] is True and first["top_k"] == 4
    version = first["tables"][TABLE]["version"]
    users = first["served_users"]
    assert users > 0 and first["model_rows"] == 4 * users

    # the same inputs again, through the job's run(): nothing is written, no new version
    cfg = load_config(None, [v for v in consumer.options if v != "--set"])
    again = recommend_job.run(cfg, uri, top_k=4)
    assert again.written is False and again.version == version and again.served_users is None
    assert again.inputs == {k: first[k] for k in again.inputs}
    assert version_of(consumer.lh, TABLE) == version

    # another version of the model: its rows are added, version 1's kept as they were
    before = table_frame(consumer.lh, TABLE)
    client = MlflowClient(consumer.tracking)
    other = mlflow.register_model(f"runs:/{consumer.champion.run_id}/model", "downbeat").version
    code, out, err = recommend(consumer, capsys, "--model-uri", f"models:/downbeat/{other}", "--top-k", "2")
    assert code == 0, err[-2000:]
    after = table_frame(consumer.lh, TABLE)
    mine = str(consumer.champion.version)
    kept = lambda f: f[f.model_version == mine].sort_values(["user_id", "rank"]).reset_index(drop=True)  # noqa: E731
    pd.testing.assert_frame_equal(kept(after), kept(before))
    assert (after[after.model_version == str(other)].groupby("user_id").size() == 2).all()

    # a table of users: only theirs are replaced (two of them have plays, one has none)
    names = sorted(before.user_id.unique())[:2]
    write_deltalake(str(consumer.lh / "gold/vip"), pa.table({"user_id": [*names, "nobody"]}))
    code, out, err = recommend(
        consumer, capsys, "--model-uri", uri, "--top-k", "1", "--users", "gold/vip", "--json"
    )
    assert code == 0, err[-2000:]
    assert json.loads(out[-1])["served_users"] == 2
    now = table_frame(consumer.lh, TABLE)
    counts = now[now.model_version == mine].groupby("user_id").size()
    assert set(counts[names]) == {1} and set(counts.drop(names)) == {4}
    assert client.get_model_version("downbeat", other).run_id == consumer.champion.run_id
    client.delete_model_version("downbeat", other)


def test_recommend_keeps_the_aliased_and_newest_versions_rows_or_the_n_newest(writable, capsys):
    """gold/recommendations does not grow with every version: by default a run keeps the rows of the
    versions holding an alias and of the newest; --keep-versions N keeps the N newest."""
    consumer = writable
    client = MlflowClient(consumer.tracking)
    champion = str(consumer.champion.version)  # the fixture's rows are the champion's
    mlflow.set_tracking_uri(consumer.tracking)
    added = [
        mlflow.register_model(f"runs:/{consumer.champion.run_id}/model", "downbeat").version for _ in "ab"
    ]
    second, third = (str(v) for v in added)
    try:
        versions = []
        for version, more in ((second, []), (third, []), (third, ["--keep-versions", "1"])):
            code, out, err = recommend(
                consumer,
                capsys,
                "--model-uri",
                f"models:/downbeat/{version}",
                "--top-k",
                "2",
                *more,
                "--json",
            )
            assert code == 0, err[-2000:]
            dropped = json.loads(out[-1])["dropped_versions"]
            versions.append((sorted(set(table_frame(consumer.lh, TABLE).model_version)), dropped))
    finally:
        for version in added:
            client.delete_model_version("downbeat", version)

    assert versions == [
        (sorted({champion, second}), []),  # the champion holds an alias, the second is the newest
        (sorted({champion, third}), [second]),  # the second has neither
        ([third], [champion]),  # the newest one alone
    ]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--model-uri", "models:/downbeat@nobody"], "models:/downbeat@nobody: .*nobody"),
        (["--model-uri", "runs:/0123/model"], "name a registered model"),
        (["--model-uri", "models:/downbeat@champion", "--top-k", "0"], "--top-k must be at least 1"),
        (
            ["--model-uri", "models:/downbeat@champion", "--users", "gold/absent"],
            "gold/absent: no such table",
        ),
        (["--model-uri", "models:/downbeat@champion", "--users", "gold/ghosts"], "no user to recommend for"),
    ],
)
def test_bad_recommend_input_exits_2_with_one_line_and_leaves_the_table(consumer, capsys, args, message):
    before = version_of(consumer.lh, TABLE)
    code, _, err = recommend(consumer, capsys, *args)
    lines = err.strip().splitlines()
    assert code == 2 and lines[-1].startswith("downbeat: error: ") and re.search(message, lines[-1]), err
    assert "Traceback" not in err
    assert version_of(consumer.lh, TABLE) == before


def test_a_catalog_that_gives_the_same_tracks_other_ids_is_refused(consumer, capsys, tmp_path):
    """A rebuild after new plays can renumber tracks without changing their count: scoring by the
    old ids would recommend the wrong tracks."""
    copy = tmp_path / "lh"
    shutil.copytree(consumer.lh, copy)
    tracks = DeltaTable(str(copy / "gold/tracks"))
    frame = table_frame(copy, "gold/tracks").sort_values("track_idx").reset_index(drop=True)
    frame.loc[[0, 1], "track_idx"] = frame.loc[[1, 0], "track_idx"].to_numpy()  # two tracks swap ids
    write_deltalake(tracks, pa.Table.from_pandas(frame, preserve_index=False), mode="overwrite")
    renumbered = version_of(copy, "gold/tracks")
    recommendations = version_of(copy, TABLE) if (copy / TABLE).exists() else None
    uri = "models:/downbeat@champion"
    code = main([*consumer.options, "--set", f"lakehouse.root={copy}", "recommend", "--model-uri", uri])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and "not the same catalog" in err[-1], err[-3:]
    assert f"gold/tracks version {renumbered} under {copy}" in err[-1]
    assert (version_of(copy, TABLE) if (copy / TABLE).exists() else None) == recommendations


# A fresh interpreter that cannot import downbeat (no editable finder, no repository on the path)
# loads the registered model and scores a request with it.
FRESH = textwrap.dedent(
    """
    import importlib.util, json, sys
    editable = lambda f: "__editable__" in str(getattr(f, "__module__", "")) + type(f).__module__
    sys.meta_path = [f for f in sys.meta_path if not editable(f)]
    sys.path_hooks = [h for h in sys.path_hooks if not editable(h)]
    sys.path = [p for p in sys.path if p not in ("", ".", {repo!r}) and "__editable__" not in p]
    sys.path_importer_cache.clear()
    hidden = {{m: importlib.util.find_spec(m) is None for m in ("downbeat", "jobs", "pipelines", "contract")}}
    assert all(hidden.values()), hidden
    sys.path.insert(0, {decoy!r})
    import models  # the consumer's own package that happens to be called `models`
    assert models.DECOY
    import mlflow, pandas as pd
    mlflow.set_tracking_uri({tracking!r})
    model = mlflow.pyfunc.load_model("models:/downbeat@champion")
    out = model.predict(pd.read_parquet({request!r}))
    out.to_parquet({result!r})
    print(json.dumps({{"models": sys.modules["downbeat.models"].__file__, "decoy": models.__file__}}))
    """
)


def test_the_champion_scores_alike_where_downbeat_is_not_installed_and_models_is_another_package(
    consumer, tmp_path
):
    next_rows = table_frame(consumer.lh, "gold/eval_next").sort_values("user_id").head(12)
    n_tracks = len(table_frame(consumer.lh, "gold/tracks"))
    request = pd.DataFrame(
        {
            HISTORY_TRACKS: list(next_rows.history_track_ids),
            HISTORY_STATIONS: list(next_rows.history_station_ids),
            HISTORY_FEEDBACK: list(next_rows.history_feedback_ids),
            STATION: next_rows.station_idx.astype("int64").to_numpy(),
            CANDIDATES: [np.arange(1, n_tracks + 1)] * len(next_rows),
        }
    )
    request.to_parquet(tmp_path / "request.parquet")
    (tmp_path / "decoy" / "models").mkdir(parents=True)
    (tmp_path / "decoy" / "models" / "__init__.py").write_text("DECOY = True\n")
    script = FRESH.format(
        repo=str(REPO),
        decoy=str(tmp_path / "decoy"),
        tracking=consumer.tracking,
        request=str(tmp_path / "request.parquet"),
        result=str(tmp_path / "result.parquet"),
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    result = run_command([sys.executable, "-c", script], cwd=tmp_path, env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    seen = json.loads(result.stdout.strip().splitlines()[-1])
    # the model's code came from the model's own files, beside a consumer's package named `models`
    assert "/code/downbeat/models/" in seen["models"] and not seen["models"].startswith(str(REPO))
    assert seen["decoy"] == str(tmp_path / "decoy" / "models" / "__init__.py")
    fresh = pd.read_parquet(tmp_path / "result.parquet")
    here = mlflow.pyfunc.load_model("models:/downbeat@champion").predict(request)
    assert len(fresh) == len(here) == 12
    for a, b in zip(fresh[SCORES], here[SCORES], strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-6)
    assert list(fresh["served"]) == list(here["served"])


def post(url: str, body: bytes, timeout: float) -> dict:
    request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return json.loads(response.read())


def malformed_bodies(body: bytes, n_tracks: int) -> dict[str, bytes]:
    """Requests a served model must refuse with a 4xx: wrong columns, wrong types, empty arrays, ids
    outside the catalog, and 10 MB bodies (garbage, and well-formed but oversized)."""
    example = json.loads(body)["dataframe_split"]
    columns, row = example["columns"], example["data"][0]

    def with_value(column: str, value) -> bytes:
        changed = [value if c == column else v for c, v in zip(columns, row, strict=True)]
        return json.dumps({"dataframe_split": {"columns": columns, "data": [changed]}}).encode()

    return {
        "wrong columns": b'{"dataframe_records": [{"x": 1}]}',
        "wrong types": with_value(HISTORY_TRACKS, ["a", "b"]),
        "no rows": json.dumps({"dataframe_split": {"columns": columns, "data": []}}).encode(),
        "empty candidates": with_value(CANDIDATES, []),
        "candidate past the catalog": with_value(CANDIDATES, [1, n_tracks + 1]),
        "negative candidate": with_value(CANDIDATES, [-3]),
        "history track past the catalog": with_value(HISTORY_TRACKS, [10**9]),
        "not json": b"{" * (10 * 2**20),
        "10 MB of candidates": with_value(CANDIDATES, [1] * (5 * 2**20 // 2)),
    }


def test_mlflow_models_serve_answers_the_signatures_input_example_with_scores(consumer, tmp_path):
    port = free_port()
    # the server runs `uvicorn` from PATH: the venv's bin folder first, as in an activated venv
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    env = {**os.environ, "MLFLOW_TRACKING_URI": consumer.tracking, "PATH": path}
    mlflow_cli = str(Path(sys.executable).parent / "mlflow")
    address = ["-h", "127.0.0.1", "-p", str(port)]
    server = subprocess.Popen(
        [mlflow_cli, "models", "serve", "-m", CHAMPION, "--env-manager", "local", *address],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
        cwd=tmp_path,
        start_new_session=True,
    )
    local = Path(mlflow.artifacts.download_artifacts("models:/downbeat@champion", dst_path=str(tmp_path)))
    body = (local / "serving_input_example.json").read_bytes()  # what the signature's example looks like
    try:
        deadline = time.monotonic() + 120
        while True:
            assert server.poll() is None, f"the server exited: {server.stdout.read()[-3000:]}"  # type: ignore[union-attr]
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            assert time.monotonic() < deadline, "the server did not answer /ping within 120 s"
            time.sleep(1)
        answer = post(f"http://127.0.0.1:{port}/invocations", body, timeout=30)
        # a malformed request is refused with a 4xx and a message, and the server keeps serving
        refusals = {}
        for case, bad in malformed_bodies(
            body, n_tracks=len(table_frame(consumer.lh, "gold/tracks"))
        ).items():
            try:
                refusals[case] = (
                    200,
                    str(post(f"http://127.0.0.1:{port}/invocations", bad, timeout=60))[:300],
                )
            except urllib.error.HTTPError as refused:
                refusals[case] = (refused.code, refused.read().decode(errors="replace")[:300])
        again = post(f"http://127.0.0.1:{port}/invocations", body, timeout=30)
    finally:
        stop_group(server)
    assert {case: code for case, (code, _) in refusals.items() if not 400 <= code < 500} == {}, refusals
    assert all(message.strip() for _, message in refusals.values()), refusals
    example = json.loads(body)["dataframe_split"]
    frame = pd.DataFrame(example["data"], columns=example["columns"])
    here = mlflow.pyfunc.load_model("models:/downbeat@champion").predict(frame)
    predictions = answer["predictions"]
    assert len(predictions) == len(frame) == 1 and again == answer
    np.testing.assert_allclose(predictions[0]["scores"], here[SCORES][0], rtol=1e-5, atol=1e-6)
    assert len(predictions[0]["scores"]) == len(frame[CANDIDATES][0]) and predictions[0]["served"] is True


def test_a_registered_version_describes_itself_to_a_consumer(consumer):
    client = MlflowClient(consumer.tracking)
    version = client.get_model_version("downbeat", consumer.champion.version)
    text = version.description
    run = client.get_run(version.run_id)
    assert text.startswith("downbeat hybrid; objective: cloze") and "p_hard=" in text
    for table in ("gold/training_sequences", "gold/validation_pairs", "gold/eval_pairs", "gold/tracks"):
        assert f"{table}@{run.data.params[f'table.{table}'].rsplit('@', 1)[1]}" in text
    accuracy = run.data.metrics["validation_paired_accuracy"]
    assert re.search(rf"Validation paired_accuracy .*: {accuracy:.4f} \[\d\.\d{{4}}, \d\.\d{{4}}\]", text)
    assert version.tags["downbeat.selected_on"] == "paired_accuracy"
    logged = json.loads(Path(client.download_artifacts(version.run_id, "test_metrics.json")).read_text())
    low, high = logged["paired_accuracy_ci_low"], logged["paired_accuracy_ci_high"]
    assert low <= run.data.metrics["test_paired_accuracy"] == logged["paired_accuracy"] <= high and low < high
    assert f"paired_accuracy {run.data.metrics['test_paired_accuracy']:.4f} [{low:.4f}, {high:.4f}]" in text
    assert "Champion decision: no champion yet" in text
    assert version.tags["downbeat.champion"] == "True" and version.tags["downbeat.model"] == "hybrid"
    assert float(version.tags["downbeat.validation_paired_accuracy"]) == pytest.approx(accuracy, abs=1e-6)
    info = mlflow.models.get_model_info("models:/downbeat@champion")
    assert info.signature is not None and info.saved_input_example_info is not None
    assert [c.name for c in info.signature.inputs.inputs][-1] == CANDIDATES
    # requirements: pinned public packages only, each at the version the lock installs
    local = Path(mlflow.artifacts.download_artifacts("models:/downbeat@champion"))
    lock = (REPO / "requirements.lock").read_text().splitlines()
    pinned = {k.lower(): v for k, v in (line.split("==") for line in lock if "==" in line)}
    wanted = [line for line in (local / "requirements.txt").read_text().splitlines() if line.strip()]
    assert wanted and all(re.fullmatch(r"[A-Za-z0-9_.-]+==[0-9][^ ]*", line) for line in wanted)
    assert all(pinned.get(line.split("==")[0].lower()) == line.split("==")[1] for line in wanted), wanted
    assert not any(line.startswith("downbeat") for line in wanted)
    assert [p.name for p in (local / "code").iterdir()] == ["downbeat"]  # one uniquely named package
    assert [p.name for p in (local / "code" / "downbeat").iterdir()] == ["models"]


def test_promote_applies_the_gate_and_refuses_a_version_without_lineage(consumer, capsys):
    client = MlflowClient(consumer.tracking)
    champion = str(consumer.champion.version)
    same_run = mlflow.register_model(f"runs:/{consumer.champion.run_id}/model", "downbeat").version
    bare = client.create_run(client.get_run(consumer.champion.run_id).info.experiment_id).info.run_id
    source = client.get_model_version("downbeat", champion).source
    orphan = client.create_model_version("downbeat", source, run_id=bare).version  # a run without lineage
    try:
        moved = main([*consumer.options, "promote", "--version", str(same_run)])
        out, err = capsys.readouterr()
        after = client.get_model_version_by_alias("downbeat", "champion").version
        refused = main([*consumer.options, "promote", "--version", str(orphan), "--alias", "candidate"])
        unknown = main([*consumer.options, "promote", "--version", "999"])
        errors = capsys.readouterr().err.strip().splitlines()
        candidate = client.get_model_version_by_alias("downbeat", "candidate").version
    finally:
        client.set_registered_model_alias("downbeat", "champion", champion)
        client.set_registered_model_alias("downbeat", "candidate", champion)
        for version in (same_run, orphan):
            client.delete_model_version("downbeat", str(version))

    assert moved == 0, err[-2000:]
    # the same network scores alike on the same validation rows: at least the champion's, so it moves
    assert re.match(
        rf"promote: validation \S+ .* is at least the champion's.*version {same_run} becomes champion", out
    )
    assert str(after) == str(same_run)
    assert (refused, unknown) == (2, 2) and str(candidate) == champion
    assert errors[0] == (
        f"downbeat: error: version {orphan} of downbeat: its run {bare} lacks table versions, config.yaml, "
        "git commit, so it takes no alias"
    )
    assert errors[1].startswith("downbeat: error: --version 999: ")


def test_with_auto_promote_off_train_leaves_the_champion_to_promote(built_lakehouse, tmp_path, capsys):
    root = own_copy(built_lakehouse, tmp_path)
    store = root / "store"
    store.mkdir()
    values = [*store_settings(root / "lh", store), *TINY_TRAINING, "registry.auto_promote=false"]
    options = [x for v in values for x in ("--set", v)]

    assert main([*options, "train", "--model", "baseline", "--json"]) == 0
    trained = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    client = MlflowClient(f"sqlite:///{store / 'mlruns.db'}")
    aliases = client.get_registered_model("downbeat").aliases
    assert trained["champion_moved"] is False and "registry.auto_promote is off" in trained["champion_reason"]
    assert set(aliases) == {"candidate"}

    version = str(aliases["candidate"])
    assert main([*options, "promote", "--version", version, "--json"]) == 0
    promoted = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert promoted["reason"] == f"no champion yet: version {version} becomes champion"
    assert str(client.get_model_version_by_alias("downbeat", "champion").version) == version
