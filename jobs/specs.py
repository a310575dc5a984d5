"""Experiment specs (conf/experiments/*.yaml): read and checked, every key and name, for the jobs
that train a spec's children (experiment, demo). Bad input names the file and the key."""

from __future__ import annotations

import itertools
import json
from collections.abc import Mapping, Sequence
from typing import Any

from downbeat.jobs.common import read_yaml_mapping
from downbeat.jobs.config import Config, load_config
from downbeat.models.experiment import BUILD_SECTIONS, Child, Spec
from downbeat.pipelines.errors import ConfigError, InputError

SPEC_KEYS = (
    "name",
    "description",
    "reference",
    "metrics",
    "run_metrics",
    "seeds",
    "set",
    "build",
    "grid",
    "children",
)
CHILD_KEYS = ("name", "model", "set", "versus")


def _text(value: Any) -> str:
    """A setting's value as --set reads it back (YAML) to the same value and type."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        text = repr(value)  # YAML 1.1 wants a dot in the mantissa: 1e-05 would read as a string
        mantissa, e, exponent = text.partition("e")
        return f"{mantissa}.0e{exponent}" if e and "." not in mantissa else text
    if isinstance(value, str):
        return json.dumps(value)  # quoted: 'on', 'null' or '2024' stay strings
    return "null" if value is None else str(value)


def _mapping(value: Any, where: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise InputError(f"{where} must be a mapping of config keys to values, got {value!r}")
    return {str(k): v for k, v in value.items()}


def load_spec(path: str) -> Spec:
    """The spec at `path`, every key and name checked; bad input names the file and the key."""
    where = f"experiment spec {path}"
    raw = _read_spec(path)
    metrics = _metric_names(where, raw, "metrics")
    run_metrics = _metric_names(where, raw, "run_metrics")
    common = tuple(f"{k}={_text(v)}" for k, v in _mapping(raw.get("set"), f"{where}: 'set'").items())
    needs = _mapping(raw.get("build"), f"{where}: 'build'")
    build = tuple(f"{k}={_text(v)}" for k, v in needs.items())
    outside = [k for k in needs if k.split(".", 1)[0] not in BUILD_SECTIONS]
    if outside:
        raise InputError(
            f"{where}: 'build' names '{outside[0]}', which build does not read "
            f"(its sections: {', '.join(BUILD_SECTIONS)})"
        )
    children = _grid_children(where, raw, common) if "grid" in raw else _listed_children(where, raw, common)
    _check_children(where, children, raw["reference"])
    seeds = raw.get("seeds", 1)
    if isinstance(seeds, bool) or not isinstance(seeds, int) or seeds < 1:
        raise InputError(f"{where}: 'seeds' must be a whole number of at least 1, got {seeds!r}")
    return Spec(
        path,
        str(raw["name"]),
        str(raw.get("description") or ""),
        str(raw["reference"]),
        metrics,
        run_metrics,
        tuple(children),
        raw,
        seeds,
        build,
    )


def _read_spec(path: str) -> dict[str, Any]:
    """The spec file as a mapping with only known keys, the required ones, and grid or children."""
    raw = read_yaml_mapping(path, "experiment spec")
    unknown = sorted(set(raw) - set(SPEC_KEYS))
    if unknown:
        raise InputError(
            f"experiment spec {path}: unknown key '{unknown[0]}' (one of {', '.join(SPEC_KEYS)})"
        )
    for key in ("name", "reference", "metrics"):
        if not raw.get(key):
            raise InputError(f"experiment spec {path}: key '{key}' is required")
    if ("grid" in raw) == ("children" in raw):
        raise InputError(f"experiment spec {path}: give exactly one of 'grid' and 'children'")
    return raw


def _metric_names(where: str, raw: dict[str, Any], key: str) -> tuple[str, ...]:
    """`metrics` (each one evaluate reports) or `run_metrics` (any names a run logs)."""
    from downbeat.models.evaluation import METRICS

    names = raw.get(key) or []
    if not isinstance(names, list) or not all(isinstance(m, str) for m in names):
        raise InputError(f"{where}: '{key}' must be a list of metric names")
    for metric in names if key == "metrics" else ():
        if metric not in METRICS:
            raise InputError(f"{where}: unknown metric '{metric}' (one of {', '.join(METRICS)})")
    return tuple(names)


def _grid_children(where: str, raw: dict[str, Any], common: tuple[str, ...]) -> list[Child]:
    """A child per combination of the grid's values, named by the model and the varied keys."""
    grid = _mapping(raw["grid"], f"{where}: 'grid'")
    if "model" not in grid:
        raise InputError(f"{where}: 'grid' must list 'model'")
    axes = {k: v if isinstance(v, list) else [v] for k, v in grid.items()}
    varied = [k for k, v in axes.items() if len(v) > 1]
    keys = list(axes)
    children = []
    for combination in itertools.product(*(axes[k] for k in keys)):
        chosen = dict(zip(keys, combination, strict=True))
        model = str(chosen.pop("model"))
        label = [f"{k.rsplit('.', 1)[-1]}={chosen[k]}" for k in varied if k != "model"]
        overrides = common + tuple(f"{k}={_text(v)}" for k, v in chosen.items())
        children.append(Child(" ".join([model, *label]), model, overrides, chosen))
    return children


def _listed_children(where: str, raw: dict[str, Any], common: tuple[str, ...]) -> list[Child]:
    """The spec's `children`, each with a name, a model and its own settings."""
    if not isinstance(raw["children"], list) or not raw["children"]:
        raise InputError(f"{where}: 'children' must be a non-empty list")
    children = []
    for i, entry in enumerate(raw["children"]):
        at = f"{where}: children[{i}]"
        if not isinstance(entry, dict):
            raise InputError(f"{at} must be a mapping with name, model and set")
        extra = sorted(set(entry) - set(CHILD_KEYS))
        if extra:
            raise InputError(f"{at}: unknown key '{extra[0]}' (one of {', '.join(CHILD_KEYS)})")
        if not entry.get("name") or not entry.get("model"):
            raise InputError(f"{at}: 'name' and 'model' are required")
        own = _mapping(entry.get("set"), f"{at}: 'set'")
        overrides = common + tuple(f"{k}={_text(v)}" for k, v in own.items())
        versus = str(entry.get("versus") or "")
        children.append(Child(str(entry["name"]), str(entry["model"]), overrides, own, versus))
    return children


def _check_children(where: str, children: list[Child], reference: object) -> None:
    """Known models, unique names, no per-child store or lakehouse, and the reference among them."""
    from downbeat.models.settings import MODEL_NAMES

    names = [c.name for c in children]
    for child in children:
        for override in child.overrides:
            if override.startswith(("mlflow.", "lakehouse.")):
                raise InputError(
                    f"{where}: child '{child.name}' sets '{override.split('=', 1)[0]}': "
                    "an experiment's runs share one tracking store and one lakehouse "
                    "(give mlflow.* and lakehouse.* with --set)"
                )
    for child in children:
        if child.model not in MODEL_NAMES:
            raise InputError(
                f"{where}: child '{child.name}' has unknown model '{child.model}' "
                f"(one of {', '.join(MODEL_NAMES)})"
            )
        if names.count(child.name) > 1:
            raise InputError(f"{where}: two children are named '{child.name}'")
    if reference not in names:
        raise InputError(f"{where}: reference '{reference}' is not a child (children: {', '.join(names)})")
    for child in children:
        if child.versus and (child.versus not in names or child.versus == child.name):
            raise InputError(
                f"{where}: child '{child.name}' is compared with '{child.versus}', which is not another "
                f"child (children: {', '.join(names)})"
            )


def child_configs(
    spec: Spec, conf: str | None, overrides: Sequence[str], last: Sequence[str] = ()
) -> dict[str, Config]:
    """Each child's configuration: `conf`, then `overrides` (--set), then the spec's settings for it
    (its `build` settings, then `set` and the child's own), then `last` (what must win over the
    spec: the demo's command line)."""
    out = {}
    for child in spec.children:
        try:
            out[child.name] = load_config(
                conf, [*overrides, *spec.build, *child.overrides, *last], architecture=child.model
            )
        except ConfigError as exc:
            raise InputError(f"experiment spec {spec.path}: child '{child.name}': {exc}") from None
    return out
