"""The reference pages stay true to the code: every configuration key has a row in
docs/configuration.md, and no row names a key that does not exist."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def config_keys(tree: dict, prefix: str = "") -> set[str]:
    """Dotted keys of conf/base.yaml; a mapping that is itself a value (`spark.conf`, empty) is one key."""
    keys: set[str] = set()
    for name, value in tree.items():
        dotted = f"{prefix}{name}"
        if isinstance(value, dict) and value:
            keys |= config_keys(value, dotted + ".")
        else:
            keys.add(dotted)
    return keys


def documented_keys(page: str) -> set[str]:
    """Keys named in the first cell of the page's table rows: `section.key`, then bare `key`s that
    share the last dotted name's section (`model.dim`, `layers`, `heads`)."""
    keys: set[str] = set()
    for line in page.splitlines():
        if not line.startswith("| `"):
            continue
        section = None
        for name in re.findall(r"`([^`]+)`", line.split("|")[1]):
            if "." in name:
                section = name.rsplit(".", 1)[0]
                keys.add(name)
            elif section:
                keys.add(f"{section}.{name}")
    return keys


def test_every_configuration_key_is_documented_and_every_documented_key_exists():
    base = config_keys(yaml.safe_load((ROOT / "conf" / "base.yaml").read_text()))
    documented = documented_keys((ROOT / "docs" / "configuration.md").read_text())
    assert sorted(base - documented) == []  # keys docs/configuration.md lacks
    assert sorted(documented - base) == []  # rows naming keys conf/base.yaml lacks


def test_the_key_reader_reads_a_row_of_several_keys_of_one_section():
    page = "| key | default |\n|---|---|\n| `model.dim`, `layers` | 64, 2 |\n| `x.y.z` | 1 |\n"
    assert documented_keys(page) == {"model.dim", "model.layers", "x.y.z"}
