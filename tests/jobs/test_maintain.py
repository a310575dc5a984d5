"""`downbeat maintain`: compaction and vacuum as a scheduler runs them, on the engine config picks."""

from __future__ import annotations

import json

import pytest

from downbeat.jobs.cli import main
from downbeat.pipelines.lakehouse import Lakehouse


def everything(root) -> list[str]:
    """Compact and vacuum every table, keeping no old version (--force: no write runs beside it)."""
    return [
        "--set",
        f"lakehouse.root={root}",
        "maintain",
        "--optimize",
        "--vacuum-hours",
        "0",
        "--force",
        "--json",
    ]


@pytest.mark.parametrize("engine", ["spark", "delta-rs"])
def test_maintain_compacts_and_vacuums_every_table_and_prints_a_summary(spark, tmp_path, capsys, engine):
    root = tmp_path / "lh"
    lakehouse = Lakehouse(spark, str(root), engine)
    for i in range(3):
        lakehouse.write(spark.range(i * 10, i * 10 + 10).coalesce(1), "gold/numbers", mode="append")
    lakehouse.write(spark.range(5), "silver/other")
    lakehouse.write(spark.range(6), "silver/other")

    code = main(everything(root))

    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["maintained"]
    assert code == 0
    assert [(m["table"], m["action"]) for m in summary] == [
        ("gold/numbers", "optimize"),
        ("gold/numbers", "vacuum"),
        ("silver/other", "optimize"),
        ("silver/other", "vacuum"),
    ]
    numbers = summary[0]
    assert (numbers["version_before"], numbers["version_after"], numbers["files_removed"]) == (2, 3, 3)
    assert summary[1]["files_removed"] == 3  # the three small files compaction replaced
    assert lakehouse.read("gold/numbers").count() == 30 and len(lakehouse.file_uris("gold/numbers")) == 1


def test_maintain_without_an_action_or_with_a_missing_table_exits_2(spark, tmp_path, capsys):
    root = f"lakehouse.root={tmp_path / 'lh'}"
    Lakehouse(spark, str(tmp_path / "lh")).write(spark.range(3), "gold/numbers")

    nothing = main(["--set", root, "maintain"])
    missing = main(["--set", root, "maintain", "--optimize", "--table", "gold/absent"])
    negative = main(["--set", root, "maintain", "--vacuum-hours", "-2"])

    err = capsys.readouterr().err.strip().splitlines()
    assert (nothing, missing, negative) == (2, 2, 2)
    assert err == [
        "downbeat: error: nothing to do: give --optimize, --vacuum-hours N, or both",
        f"downbeat: error: table gold/absent does not exist under {tmp_path / 'lh'}",
        "downbeat: error: --vacuum-hours must be 0 or more, not -2",
    ]


def test_a_vacuum_under_the_minimum_retention_needs_force(spark, tmp_path, capsys):
    """A vacuum shorter than a write running beside it deletes that write's staged files: under
    lakehouse.min_vacuum_hours (168 by default) it is refused, files untouched, unless --force."""
    root = tmp_path / "lh"
    lakehouse = Lakehouse(spark, str(root))
    for i in range(2):
        lakehouse.write(spark.range(i, i + 1).coalesce(1), "gold/numbers", mode="overwrite")
    files = sorted(p.name for p in (root / "gold/numbers").glob("*.parquet"))
    setting = ["--set", f"lakehouse.root={root}"]

    refused = main([*setting, "maintain", "--vacuum-hours", "1"])
    err = capsys.readouterr().err.strip().splitlines()
    assert refused == 2 and len(err) == 1
    assert err[0].startswith("downbeat: error: --vacuum-hours 1 is under lakehouse.min_vacuum_hours (168)")
    assert sorted(p.name for p in (root / "gold/numbers").glob("*.parquet")) == files
    lowered = main([*setting, "--set", "lakehouse.min_vacuum_hours=0.5", "maintain", "--vacuum-hours", "1"])
    forced = main([*setting, "maintain", "--vacuum-hours", "0", "--force"])
    assert (lowered, forced) == (0, 0)
    assert len(list((root / "gold/numbers").glob("*.parquet"))) == 1  # the overwritten file is gone


def test_the_streamed_training_table_is_vacuumed_but_never_compacted(spark, tmp_path, capsys):
    root = tmp_path / "lh"
    lakehouse = Lakehouse(spark, str(root))
    for i in range(2):
        lakehouse.write(spark.range(i, i + 1).coalesce(1), "gold/training_sequences", mode="append")
    lakehouse.write(spark.range(3), "gold/numbers")
    every = main(everything(root))
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["maintained"]
    assert every == 0
    assert [(m["table"], m["action"]) for m in summary] == [
        ("gold/numbers", "optimize"),
        ("gold/numbers", "vacuum"),
        ("gold/training_sequences", "vacuum"),
    ]
    assert len(lakehouse.file_uris("gold/training_sequences")) == 2
    before = lakehouse.version("gold/training_sequences")
    named = main(
        ["--set", f"lakehouse.root={root}", "maintain", "--optimize", "--table", "gold/training_sequences"]
    )
    assert named == 2
    assert "--optimize gold/training_sequences: its files are laid out for the training loader" in (
        capsys.readouterr().err
    )
    assert lakehouse.version("gold/training_sequences") == before  # refused before anything ran
