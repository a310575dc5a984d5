"""Opening an MLflow store leaves this process's logging as it was."""

from __future__ import annotations

import logging

from downbeat.models.tracking import experiment_id


def test_opening_a_fresh_sqlite_store_leaves_the_root_loggers_handlers_and_level_as_they_were(tmp_path):
    # MLflow migrates a fresh store with alembic, whose logging.config.fileConfig replaces the root
    # logger's handlers with one bound to the sys.stderr of that moment and raises it to WARNING
    root = logging.getLogger()
    ours = logging.StreamHandler()  # as the CLI's handler
    root.addHandler(ours)
    before = (list(root.handlers), root.level)
    try:
        experiment_id(f"sqlite:///{tmp_path / 'fresh.db'}", "probe", str(tmp_path / "artifacts"))
        assert (list(root.handlers), root.level) == before
        assert logging.getLogger("downbeat.jobs").isEnabledFor(logging.INFO)
    finally:
        root.removeHandler(ours)


def test_a_run_left_running_after_it_failed_is_ended_as_failed_and_an_ended_one_is_left_alone(tmp_path):
    import mlflow
    from mlflow.tracking import MlflowClient

    from downbeat.models.lifecycle import _ensure_ended

    uri = f"sqlite:///{tmp_path / 'store.db'}"
    experiment = experiment_id(uri, "probe", str(tmp_path / "artifacts"))
    assert mlflow.get_tracking_uri() == uri  # the store the train job's run lives in
    client = MlflowClient(uri)
    running = client.create_run(experiment).info.run_id
    finished = client.create_run(experiment).info.run_id
    client.set_terminated(finished, status="FINISHED")

    _ensure_ended(running)
    _ensure_ended(finished)

    assert client.get_run(running).info.status == "FAILED"
    assert client.get_run(finished).info.status == "FINISHED"
