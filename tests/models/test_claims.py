"""Claims' verdicts from report.json documents: the interval decides, never a hand-typed figure."""

from __future__ import annotations

import pytest

from downbeat.models.claims import BEGIN, END, Claim, judge, render, replace_section, rows_in


def report(diff, low, high, seeds=3, versus=None, spread=0.001):
    return {
        "experiment": "e",
        "reference": "base",
        "children": {
            "base": {"seeds": seeds, "versus": None, "m": {"value": 0.5}},
            "new": {
                "seeds": seeds,
                "versus": versus,
                "m": {
                    "value": 0.5 + diff,
                    "diff": diff,
                    "diff_low": low,
                    "diff_high": high,
                    "diff_seed_std": spread,
                },
            },
        },
    }


def claim(expect="higher", **more):
    return Claim(
        "new beats base", "+6%", "here", experiment="e", child="new", metric="m", expect=expect, **more
    )


@pytest.mark.parametrize(
    ("expect", "interval", "verdict"),
    [
        ("higher", (0.01, 0.002, 0.02), "held"),
        ("higher", (0.01, -0.002, 0.02), "not held (interval holds 0)"),
        ("higher", (-0.01, -0.02, -0.002), "not held"),
        ("lower", (-0.01, -0.02, -0.002), "held"),
        ("lower", (0.01, 0.002, 0.02), "not held"),
        ("same", (0.001, -0.002, 0.004), "held"),
        ("same", (0.01, 0.002, 0.02), "not held"),
        ("at_least", (0.001, -0.002, 0.004), "held (interval holds 0)"),  # level: within noise
        ("at_least", (0.01, 0.002, 0.02), "held"),
        ("at_least", (-0.001, -0.004, 0.002), "not held"),  # the point estimate falls short
        ("at_least", (-0.01, -0.02, -0.002), "not held"),
    ],
)
def test_the_verdict_is_where_the_paired_interval_lies_against_the_papers_direction(
    expect, interval, verdict
):
    got = judge(claim(expect), report(*interval))
    assert got.verdict == verdict
    assert (
        f"new - base {interval[0]:+.4f} [{interval[1]:+.4f}, {interval[2]:+.4f}], seed std 0.0010 (3 seeds)"
        in got.figure
    )


def test_fewer_seeds_than_asked_untestable_and_missing_reports_say_so():
    assert judge(claim(), report(0.01, 0.002, 0.02, seeds=1)).verdict == "held (1 of the 3 seeds asked)"
    assert judge(claim(), None).verdict == "not run here yet (experiment e)"
    assert (
        judge(claim(untestable="needs a log with skips"), None).verdict
        == "untestable here: needs a log with skips"
    )
    assert "no child 'new'" in judge(claim(), {"children": {}}).verdict


def test_a_claim_compared_with_another_child_than_its_report_did_is_refused():
    assert judge(claim(versus="other"), report(0.01, 0.002, 0.02, versus="other")).verdict == "held"
    with pytest.raises(ValueError, match="compares 'new' with 'base', not 'other'"):
        judge(claim(versus="other"), report(0.01, 0.002, 0.02))


def test_the_generated_section_replaces_only_itself():
    table = render([claim()], {"e": report(0.01, 0.002, 0.02)})
    assert table.startswith(BEGIN) and table.rstrip().endswith(END) and "| held |" in table
    document = f"# Results\n\nbefore\n\n{BEGIN}\nold\n{END}\n\nafter\n"
    replaced = replace_section(document, table)
    assert replaced.startswith("# Results\n\nbefore\n\n") and replaced.endswith("\n\nafter\n")
    assert "old" not in replaced and replaced.count(BEGIN) == 1
    assert replace_section("# R\n", table) == "# R\n\n" + table  # appended where there was none


def test_a_claim_without_a_report_this_time_keeps_the_row_written_before():
    other = Claim("other beats base", "+1%", "there", experiment="o", child="new", metric="m")
    before = render([claim(), other], {"e": report(0.01, 0.002, 0.02), "o": report(0.01, -0.002, 0.02)})
    kept = rows_in(f"# Results\n\n{before}\nafter\n")
    assert set(kept) == {("new beats base", "here"), ("other beats base", "there")}
    table = render([claim(), other], {"e": report(-0.01, -0.02, -0.002)}, kept)
    rows = table.splitlines()[3:5]
    assert rows[0].endswith("| not held |")  # e reported again: recomputed
    assert rows[1] == before.splitlines()[4] and rows[1].endswith("| not held (interval holds 0) |")
    moved = Claim("other beats base", "+1%", "elsewhere", experiment="o", child="new", metric="m")
    assert render([moved], {}, kept).splitlines()[3].endswith("| not run here yet (experiment o) |")
    remetered = Claim("other beats base", "+1%", "there", experiment="o", child="new", metric="m2")
    assert render([remetered], {}, kept).splitlines()[3].endswith("| not run here yet (experiment o) |")
    repapered = Claim("other beats base", "+2%", "there", experiment="o", child="new", metric="m")
    assert render([repapered], {}, kept).splitlines()[3] == rows[1].replace("| +1% |", "| +2% |")
    assert rows_in("# no section\n") == {}


def test_a_child_compared_with_another_child_is_plotted_from_that_childs_value(tmp_path, monkeypatch):
    from downbeat.models import plots
    from downbeat.models.evaluation import Difference
    from downbeat.models.report import ChildResult, plot_against_settings

    drawn = {}
    monkeypatch.setattr(
        plots, "plot_metric_against", lambda key, metric, points, path: drawn.setdefault(path.name, points)
    )

    def child(name, value, setting, versus="", diff=None):
        differences = (
            {} if diff is None else {"m": Difference(value, value - diff, diff, diff - 0.01, diff + 0.01)}
        )
        return ChildResult(
            name, "sasrec", "r", {"beta": setting}, {"m": value}, differences, 0, 1, versus=versus
        )

    children = [child("a", 0.5, 0.0), child("b", 0.7, 0.5, "", 0.2), child("c", 0.9, 1.0, "b", 0.2)]
    plot_against_settings(children, "a", ["m"], tmp_path)
    points = drawn["m_vs_beta.png"]
    assert points[1][2:] == pytest.approx((0.69, 0.71))  # a's 0.5 + b's difference
    assert points[2][2:] == pytest.approx((0.89, 0.91))  # b's 0.7 + c's difference from b
