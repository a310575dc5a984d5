"""`downbeat claims [--claims FILE] [--report PATH ...] [--out FILE] [--merged DIR]`: the claims table.

Reads the claims (default conf/claims.yaml: each names an experiment spec's child, the child it is
compared with, a metric and the direction the paper reports) and each experiment's report.json:
from the tracking store (the newest finished parent run of that experiment, under
mlflow.tracking_uri) and from any --report files (which win: results from other stores, e.g. a
lakehouse of its own per dataset). Several --report files of one experiment (the runs.json, or
`experiment --json` output, of processes in separate stores: the same spec, seeds and configuration
on the same table versions, each holding some of its runs) are merged into the report one store
would have written (models/merging.py; --merged DIR writes it). A file holding only some runs (a
waiting process's runs.json) is merged, never used alone. Prints the table, or with --out writes
it into that file between its generated-section markers (docs/results.md), leaving the rest of the
file as it was; there a claim whose experiment has no report this time keeps the row the file has
for it, so a row changes only when its own experiment reports again.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any

from downbeat.jobs.common import config_from, job_main, read_yaml_mapping
from downbeat.jobs.config import PROJECT_ROOT
from downbeat.models.claims import Claim, render, replace_section, rows_in
from downbeat.pipelines.errors import InputError

log = logging.getLogger("downbeat.claims")
CLAIMS = PROJECT_ROOT / "conf" / "claims.yaml"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--claims", default=str(CLAIMS), metavar="FILE", help="default conf/claims.yaml")
    parser.add_argument(
        "--report",
        action="append",
        default=[],
        metavar="PATH",
        help="an experiment's report.json, or runs.json (repeatable: several of one experiment merge)",
    )
    parser.add_argument("--out", metavar="FILE", help="write the table into this file's claims section")
    parser.add_argument(
        "--merged",
        metavar="DIR",
        help="write each report merged from several --report files here (<experiment>.report.md, "
        ".report.json and .runs.json)",
    )


def load_claims(path: str) -> list[Claim]:
    """The claims file, every key checked: bad input names the file and the entry."""
    entries = read_yaml_mapping(path, "claims file").get("claims")
    if not isinstance(entries, list) or not entries:
        raise InputError(f"claims file {path} must hold a non-empty list under 'claims'")
    known = set(Claim.__dataclass_fields__)
    claims: list[Claim] = []
    for i, entry in enumerate(entries):
        where = f"claims file {path}: claims[{i}]"
        if not isinstance(entry, dict):
            raise InputError(f"{where} must be a mapping")
        unknown = sorted(set(entry) - known)
        if unknown:
            raise InputError(f"{where}: unknown key '{unknown[0]}' (one of {', '.join(sorted(known))})")
        for key in ("claim", "paper", "here"):
            if not entry.get(key):
                raise InputError(f"{where}: key '{key}' is required")
        if not entry.get("untestable"):
            for key in ("experiment", "child", "metric"):
                if not entry.get(key):
                    raise InputError(f"{where}: key '{key}' is required unless 'untestable' says why")
        if entry.get("expect", "higher") not in ("higher", "lower", "same", "at_least"):
            raise InputError(
                f"{where}: 'expect' must be higher, lower, same or at_least, got {entry['expect']!r}"
            )
        values = {k: str(v) for k, v in entry.items()}
        if any((c.claim, c.here) == (values["claim"], values["here"]) for c in claims):
            raise InputError(f"{where} repeats another claim's 'claim' and 'here'")
        claims.append(Claim(**values))  # type: ignore[arg-type]  # expect is checked above
    return claims


def stored_reports(tracking_uri: str, experiment: str, names: set[str]) -> dict[str, dict[str, Any]]:
    """Each named experiment's report.json from its newest finished parent run in the store."""
    from mlflow.tracking import MlflowClient

    from downbeat.models.experiment import EXPERIMENT_TAG
    from downbeat.models.tracking import kept_logging

    prefix = "sqlite:///"
    if tracking_uri.startswith(prefix) and not Path(tracking_uri[len(prefix) :]).is_file():
        return {}  # no store yet (opening one would create it)
    client = MlflowClient(tracking_uri)
    found = client.get_experiment_by_name(experiment)
    if found is None:
        return {}
    out = {}
    with kept_logging():
        for name in sorted(names):
            runs = client.search_runs(
                [found.experiment_id],
                filter_string=f"tags.`{EXPERIMENT_TAG}` = '{name}' and attributes.status = 'FINISHED'",
                order_by=["attributes.end_time DESC"],
                max_results=1,
            )
            if runs:
                path = client.download_artifacts(runs[0].info.run_id, "report.json")
                out[name] = json.loads(Path(path).read_text())
    return out


def given_reports(paths: list[str], merged: Path | None = None) -> dict[str, dict[str, Any]]:
    """Each experiment's report from the --report files: one file as it is; several of one
    experiment (runs.json files of separate stores, models/merging.py) merged into
    the report of all their runs, also written to `merged` as `<experiment>.report.md`, `.report.json`
    and `.runs.json` (that report with its runs, which merges again)."""
    from downbeat.models.merging import merged_report

    given: dict[str, list[tuple[str, dict[str, Any]]]] = {}
    for path in paths:
        try:
            report = json.loads(Path(path).read_text())
        except (OSError, ValueError) as exc:
            raise InputError(f"--report {path}: {str(exc).splitlines()[0]}") from None
        if not isinstance(report, dict) or not report.get("experiment"):
            raise InputError(f"--report {path} is not an experiment's report.json (no 'experiment' in it)")
        given.setdefault(str(report["experiment"]), []).append((path, report))
    found = {}
    for name, reports in given.items():
        if len(reports) == 1 and not reports[0][1].get("waiting"):
            found[name] = reports[0][1]
            continue
        try:
            found[name], document = merged_report(reports)
        except (KeyError, TypeError, ValueError) as exc:
            raise InputError(f"--report: experiment {name}: {exc}") from None
        if merged is not None:  # as an experiment writes them: report.json readable, runs.json compact
            merged.mkdir(parents=True, exist_ok=True)
            runs = {k: v for k, v in found[name].items() if k in ("users", "runs")}
            table = {k: v for k, v in found[name].items() if k not in runs}
            (merged / f"{name}.report.json").write_text(json.dumps(table, indent=2, sort_keys=True))
            (merged / f"{name}.runs.json").write_text(json.dumps(found[name], sort_keys=True))
            (merged / f"{name}.report.md").write_text(document)
        log.info(
            "experiment %s: %d runs merged from %d reports", name, len(found[name]["runs"]), len(reports)
        )
    return found


def run(
    claims_path: str,
    reports: list[str],
    tracking_uri: str,
    experiment: str,
    previous: str = "",
    merged: Path | None = None,
) -> str:
    """The claims table (markdown); `previous`: the document whose verdicts stand where no report is
    found; `merged`: where reports merged from several files are written."""
    claims = load_claims(claims_path)
    found = stored_reports(tracking_uri, experiment, {c.experiment for c in claims if c.experiment})
    found |= given_reports(reports, merged)
    try:
        return render(claims, found, rows_in(previous))
    except ValueError as exc:
        raise InputError(f"claims file {claims_path}: {exc}") from None


def command(args: argparse.Namespace) -> int:
    cfg = config_from(args)
    out = Path(args.out) if args.out else None
    if out is not None and not out.is_file():
        raise InputError(f"--out {out} not found")
    document = out.read_text() if out is not None else ""
    merged = Path(args.merged) if args.merged else None
    table = run(args.claims, args.report, cfg.mlflow.tracking_uri, cfg.mlflow.experiment, document, merged)
    if out is not None:
        out.write_text(replace_section(document, table))
        print(f"claims: {table.count(chr(10)) - 4} claims written into {out}")
    else:
        print(table, end="")
    return 0


def main(argv: list[str] | None = None) -> int:
    return job_main("claims", __doc__.splitlines()[0] if __doc__ else None, command, add_arguments, argv)


if __name__ == "__main__":
    sys.exit(main())
