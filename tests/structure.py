"""Prints what the structure rules flag: functions over 60 lines outside tests, and job modules
that import another job module (jobs.common, jobs.config, jobs.cli, jobs.training and jobs.specs are shared
helpers). tests/test_structure.py holds both at zero.

    .venv/bin/python tests/structure.py            # exit 0 either way; the counts are the last lines
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("pipelines", "models", "jobs")
HELPERS = {
    "downbeat.jobs.common",
    "downbeat.jobs.config",
    "downbeat.jobs.cli",
    "downbeat.jobs.training",
    "downbeat.jobs.specs",
}
LIMIT = 60


def long_functions(
    limit: int = LIMIT, root: Path = ROOT, packages: tuple[str, ...] = PACKAGES
) -> list[tuple[str, str, int]]:
    """(file, qualified name, lines) of every function longer than `limit` lines, longest first."""
    found = []
    for package in packages:
        for path in sorted((root / package).rglob("*.py")):
            tree = ast.parse(path.read_text(), filename=str(path))
            for node, qualified in _functions(tree):
                length = (node.end_lineno or node.lineno) - node.lineno + 1
                if length > limit:
                    found.append((str(path.relative_to(root)), qualified, length))
    return sorted(found, key=lambda f: -f[2])


def _functions(tree: ast.AST, prefix: str = ""):
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            yield node, prefix + node.name
            yield from _functions(node, prefix + node.name + ".")
        elif isinstance(node, ast.ClassDef):
            yield from _functions(node, prefix + node.name + ".")


def job_imports(folder: Path = ROOT / "jobs") -> list[tuple[str, str]]:
    """(job module, job module it imports) for every import of one job by another, in `folder`."""
    jobs = {f"downbeat.jobs.{p.stem}" for p in folder.glob("*.py") if p.stem != "__init__"} - HELPERS
    found = []
    for path in sorted(folder.glob("*.py")):
        module = f"downbeat.jobs.{path.stem}"
        if module not in jobs:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            names: list[str] = []
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            found += [(module, n) for n in names if n in jobs and n != module]
    return sorted(set(found))


def main() -> None:
    long = long_functions()
    for file, name, length in long:
        print(f"{file}: {name} is {length} lines")
    for module, imported in job_imports():
        print(f"{module} imports the job {imported}")
    print(f"{len(long)} function(s) over {LIMIT} lines; {len(job_imports())} job-to-job import(s)")


if __name__ == "__main__":
    main()
