"""Secrets planted in the config reach neither the output, the logs, the tracking store, the
artifacts nor the checkpoints; `config show` prints them masked."""

from __future__ import annotations

import zipfile
from pathlib import Path

from downbeat.jobs.cli import main
from tests.jobs.small import TINY_TRAINING, own_copy, store_settings

SECRETS = ("PLANTED-S3-SECRET", "PLANTED-TOKEN", "PLANTED-URI-PASS")
PLANTED = (
    f"spark.conf.spark.hadoop.fs.s3a.secret.key={SECRETS[0]}",
    f"spark.conf.spark.hadoop.fs.s3a.session.token={SECRETS[1]}",
    # a URI's userinfo, in a setting the local run does not use
    f"spark.conf.spark.hadoop.fs.s3a.bucket.probe.endpoint=https://probe-user:{SECRETS[2]}@example.invalid",
)


def options(values) -> list[str]:
    return [x for v in values for x in ("--set", v)]


def test_config_show_masks_secret_keys_and_userinfo(capsys):
    more = ("mlflow.tracking_uri=postgresql://mlflow:PLANTED-DB-PASS@db:5432/runs",)
    assert main([*options((*PLANTED, *more)), "config", "show"]) == 0

    out = capsys.readouterr().out
    assert not [s for s in (*SECRETS, "PLANTED-DB-PASS") if s in out]
    assert "spark.hadoop.fs.s3a.secret.key: '***'" in out
    assert "tracking_uri: postgresql://***@db:5432/runs" in out


def found_in(folder: Path) -> list[str]:
    """Files under `folder` (and members of the zip files among them) that hold a planted secret."""
    hits = []
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        blobs = [(str(path), path.read_bytes())]
        if zipfile.is_zipfile(path):  # torch checkpoints and logged models
            with zipfile.ZipFile(path) as archive:
                blobs += [(f"{path}!{n}", archive.read(n)) for n in archive.namelist()]
        hits += [f"{where}: {s}" for where, blob in blobs for s in SECRETS if s.encode() in blob]
    return hits


def test_a_trained_run_tracks_no_secret(built_lakehouse, tmp_path, capfd):
    root = own_copy(built_lakehouse, tmp_path)
    store = root / "store"
    store.mkdir()
    values = [*store_settings(root / "lh", store), *TINY_TRAINING, *PLANTED]

    assert main([*options(values), "train", "--model", "baseline", "--json"]) == 0

    out, err = capfd.readouterr()
    assert '"job": "train"' in out  # the summary was printed, and it holds none
    assert not [s for s in SECRETS if s in out or s in err]
    assert (store / "mlruns.db").is_file() and any((store / "artifacts").rglob("config.yaml"))
    assert found_in(store) == []  # the SQLite store, artifacts (config.yaml, model files), checkpoints
