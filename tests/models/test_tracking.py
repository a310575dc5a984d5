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
