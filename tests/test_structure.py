"""The structure rules: one `downbeat` namespace, jobs that import no other job, and no function
over 60 lines outside tests."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.structure import job_imports, long_functions

NAMES = ("downbeat.pipelines", "downbeat.models", "downbeat.jobs", "pipelines", "models", "jobs", "contract")


def test_no_job_imports_another_job():
    assert job_imports() == []


def test_no_function_outside_tests_is_over_60_lines():
    assert long_functions() == []


def test_the_length_check_counts_every_line_of_a_function_or_method_docstring_included(tmp_path):
    (tmp_path / "pkg").mkdir()
    body = "".join(f"    x{i} = {i}\n" for i in range(58))
    source = f'def short():\n    """Doc."""\n{body}\n\nclass C:\n    def long(self):\n        """Doc."""\n'
    source += "".join(f"        y{i} = {i}\n" for i in range(59))
    (tmp_path / "pkg" / "m.py").write_text(source)
    assert long_functions(root=tmp_path, packages=("pkg",)) == [("pkg/m.py", "C.long", 61)]


def test_the_job_import_check_finds_a_job_importing_another(tmp_path):
    (tmp_path / "common.py").write_text("import json\n")  # a shared helper may be imported by any job
    (tmp_path / "ingest.py").write_text("from downbeat.jobs.common import x\n")
    (tmp_path / "build.py").write_text("import os\n\ndef f():\n    from downbeat.jobs import ingest\n")
    (tmp_path / "train.py").write_text("import downbeat.jobs.build\n")
    assert job_imports(tmp_path) == [
        ("downbeat.jobs.build", "downbeat.jobs.ingest"),
        ("downbeat.jobs.train", "downbeat.jobs.build"),
    ]


def test_the_installed_package_is_one_downbeat_namespace(tmp_path):
    """Outside the checkout, the venv imports downbeat.* and no generic top-level name."""
    probe = (
        "import importlib.util as u, json\n"
        f"print(json.dumps({{n: u.find_spec(n) is not None for n in {NAMES!r}}}))"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=tmp_path,
        env={"PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        check=True,
    )
    found = json.loads(result.stdout)
    assert found == {n: n.startswith("downbeat.") for n in NAMES}


def test_every_table_the_contract_names_has_a_schema_and_no_schema_is_unnamed():
    from downbeat.models.contract import Tables
    from downbeat.pipelines.schemas import TABLES

    named = {v for k, v in vars(Tables).items() if k.isupper()}
    assert set(TABLES) == named - {Tables.DOCTOR}  # doctor's probe table is written and dropped
