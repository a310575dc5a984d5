"""Layered YAML configuration turned into frozen dataclasses.

A config file is a YAML mapping. It may start with `extends: <file>` (relative to itself) to
layer small overrides on a base file; later layers win key by key. `--set a.b=value` overrides
come last; values are parsed as YAML scalars (`--set spark.shuffle_partitions=8`). Every key must
name a dataclass field: unknown keys, wrong types and missing files raise ConfigError naming the
key and the file it came from; a key of the old flat `train` section names the key it moved to.

A command that trains one architecture (`train --model NAME`, an experiment's or the demo's child)
also reads that architecture's defaults, `models/NAME.yaml` beside the first file of the chain
(conf/models/pooled.yaml beside conf/base.yaml), when it exists: its values replace only the
values the first file gave, so every file that extends it, and every --set, still wins.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import fnmatch
import math
import os
import re
import types
import typing
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Union

import yaml

from downbeat.models.redaction import redact
from downbeat.models.settings import OptimSettings, RunSettings, moved_key_message
from downbeat.models.tracking import MlflowSettings, RegistrySettings
from downbeat.models.zoo import ModelSettings
from downbeat.pipelines.errors import ConfigError
from downbeat.pipelines.lakehouse import DeltaSettings, LakehouseSettings
from downbeat.pipelines.settings import (
    EvalSettings,
    FeatureSettings,
    SequenceSettings,
    SessionSettings,
    SkipSettings,
    SplitSettings,
)
from downbeat.pipelines.sources import IngestSettings, SourceSettings
from downbeat.pipelines.spark import SparkSettings
from downbeat.pipelines.split import check_sequences, check_split

DEFAULT_CONF = Path("conf") / "local.yaml"
PROJECT_ROOT = Path(__file__).resolve().parent.parent
EXTENDS = "extends"
ARCHITECTURE_DEFAULTS = "models"  # the folder of the architectures' defaults, beside base.yaml


@dataclass(frozen=True)
class Config:
    """The resolved configuration of one command."""

    spark: SparkSettings
    delta: DeltaSettings
    lakehouse: LakehouseSettings
    mlflow: MlflowSettings
    registry: RegistrySettings
    sources: SourceSettings
    ingest: IngestSettings
    sessions: SessionSettings
    skips: SkipSettings
    split: SplitSettings
    sequences: SequenceSettings
    eval: EvalSettings
    model: ModelSettings
    optim: OptimSettings
    train: RunSettings
    source_files: tuple[str, ...] = dataclasses.field(default=(), compare=False)

    @property
    def features(self) -> FeatureSettings:
        return FeatureSettings(self.sessions, self.skips, self.split, self.sequences, self.eval)

    @property
    def training_width(self) -> int:
        """Positions of a row the model reads: model.max_length, at most what the build keeps
        (gold/training_sequences holds sequences.row_length(); the model reads its last positions)."""
        return min(self.model.max_length, self.sequences.row_length())


def resolve_conf_path(path: str | os.PathLike[str] | None) -> Path:
    """The config file to load: the given path, else conf/local.yaml here or in the project."""
    if path is not None:
        return Path(path)
    if DEFAULT_CONF.exists() or not (PROJECT_ROOT / DEFAULT_CONF).exists():
        return DEFAULT_CONF
    return PROJECT_ROOT / DEFAULT_CONF


def load_config(
    path: str | os.PathLike[str] | None = None,
    overrides: Iterable[str] = (),
    architecture: str | None = None,
) -> Config:
    """Load `path` with the files it extends (and `architecture`'s defaults over the first of
    them), apply `key=value` overrides, return a frozen Config."""
    conf_path = resolve_conf_path(path)
    values: dict[str, Any] = {}
    origins: dict[str, str] = {}
    files = _read_layers(conf_path, values, origins, seen=())
    if architecture is not None:
        files = _architecture_layer(files, values, origins, architecture)
    for override in overrides:
        key, value = _parse_override(override)
        _set_dotted(values, origins, key, value, origin="--set")
    built = _build(Config, values, origins, prefix="", skip={"source_files"})
    check_ranges(built, origins)
    return dataclasses.replace(built, source_files=tuple(str(f) for f in files))


# Each numeric setting's range, checked when a config loads (before Spark or MLflow start):
# (key pattern, lowest, highest, whether the bounds are open); None = unbounded.
RANGES: tuple[tuple[str, float | None, float | None, str], ...] = (
    ("spark.shuffle_partitions", 1, None, "[]"),
    ("lakehouse.min_vacuum_hours", 0, None, "[]"),
    ("sessions.gap_minutes", 0, None, "(]"),
    ("skips.threshold_seconds", 0, None, "[]"),
    ("eval.max_pairs_per_user", 1, None, "[]"),
    ("model.dim", 1, None, "[]"),
    ("model.layers", 1, None, "[]"),
    ("model.heads", 1, None, "[]"),
    ("model.max_length", 1, None, "[]"),
    ("model.feedforward", 1, None, "[]"),
    ("model.dropout", 0, 1, "[)"),
    ("model.init_std", 0, None, "(]"),
    ("model.*.sampled_negatives", 1, None, "[]"),
    ("model.*.p_task", 0, 1, "(]"),
    ("model.*.p_hard", 0, 1, "[]"),
    ("model.*.history_dropout", 0, 1, "[)"),
    ("model.*.k", 1, None, "[]"),
    ("model.*.temperature", 0, None, "(]"),
    ("model.*.window", 1, None, "[]"),
    ("model.*.horizontal", 1, None, "[]"),
    ("model.*.vertical", 0, None, "[]"),
    ("model.*.alpha", 0, None, "[]"),
    ("model.*.beta", 0, None, "[]"),
    ("model.*.catalog_weight", 0, None, "[]"),
    ("model.*.catalog_blend", 0, 1, "[]"),
    ("model.*.gbce_t", 0, 1, "[]"),
    ("model.*.not_to_recommend", 0, None, "[]"),
    ("optim.learning_rate", 0, None, "(]"),
    ("optim.weight_decay", 0, None, "[]"),
    ("optim.warmup_steps", 0, None, "[]"),
    ("optim.clip_norm", 0, None, "(]"),
    ("optim.adam_beta2", 0, 1, "()"),
    ("train.batch_size", 1, None, "[]"),
    ("train.max_epochs", 1, None, "[]"),
    ("train.patience", 1, None, "[]"),
    ("train.eval_batch_size", 1, None, "[]"),
    ("train.processes", 1, None, "[]"),
    ("train.shuffle_buffer", 1, None, "[]"),
    ("train.prefetch", 0, None, "[]"),
    ("train.collective_timeout_s", 1, None, "[]"),
)
# What Spark reads as a memory size, and the master URLs it knows.
MEMORY = re.compile(r"^\d+[kmgtp]?b?$", re.IGNORECASE)
MASTER = re.compile(
    r"^(local(\[(\*|\d+)(,\d+)?\])?|local-cluster\[\d+,\d+,\d+\]|yarn|(spark|k8s|mesos)://\S+)$"
)


def check_ranges(cfg: Config, origins: Mapping[str, str]) -> None:
    """Every setting within its range (RANGES, finite numbers, Spark's forms, the split's rules):
    one line naming the key, the value, the range and the file it came from, else nothing."""
    flat = dict(_flat(dataclasses.asdict(cfg), prefix=""))
    for key, value in flat.items():
        where = _origin_of(origins, key)
        if isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(f"config key '{key}' must be a finite number, got {value} (in {where})")
        for pattern, low, high, bounds in RANGES:
            if fnmatch.fnmatchcase(key, pattern) and not _within(value, low, high, bounds):
                raise ConfigError(
                    f"config key '{key}' must be {_range(low, high, bounds)}, got {value} (in {where})"
                )
    if cfg.model.dim % cfg.model.heads:
        raise ConfigError(
            f"config key 'model.heads' must divide model.dim ({cfg.model.dim}), got {cfg.model.heads} "
            f"(in {_origin_of(origins, 'model.heads')})"
        )
    if not MEMORY.match(cfg.spark.driver_memory):
        raise ConfigError(
            f"config key 'spark.driver_memory' must be a size Spark reads (e.g. 4g, 512m), "
            f"got {cfg.spark.driver_memory!r} (in {_origin_of(origins, 'spark.driver_memory')})"
        )
    if cfg.spark.master is not None and not MASTER.match(cfg.spark.master):
        raise ConfigError(
            f"config key 'spark.master' must be local[N], local-cluster[N,C,M], yarn or spark://, k8s://, "
            f"mesos:// URL, got {cfg.spark.master!r} (in {_origin_of(origins, 'spark.master')})"
        )
    check_split(cfg.split)
    check_sequences(cfg.sequences)


def _flat(data: Mapping[str, Any], prefix: str) -> Iterable[tuple[str, Any]]:
    for key, value in data.items():
        if isinstance(value, dict) and key != "conf":
            yield from _flat(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", value


def _within(value: Any, low: float | None, high: float | None, bounds: str) -> bool:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return True
    above = low is None or (value > low if bounds[0] == "(" else value >= low)
    below = high is None or (value < high if bounds[1] == ")" else value <= high)
    return above and below


def _range(low: float | None, high: float | None, bounds: str) -> str:
    if high is None:
        return f"more than {low}" if bounds[0] == "(" else f"at least {low}"
    return f"in {bounds[0]}{low}, {high}{bounds[1]}"


def to_yaml(cfg: Config) -> str:
    """The resolved configuration as YAML, in the layout the files use, secrets masked
    (models.redaction): what `config show` prints and a run's `config.yaml` holds."""
    data = dataclasses.asdict(cfg)
    data.pop("source_files", None)
    return yaml.safe_dump(redact(data), sort_keys=False, default_flow_style=False)


def _read_layers(
    path: Path, values: dict[str, Any], origins: dict[str, str], seen: tuple[Path, ...]
) -> list[Path]:
    resolved = path.resolve()
    if resolved in seen:
        chain = " -> ".join(str(p) for p in (*seen, resolved))
        raise ConfigError(f"config file {path}: 'extends' forms a cycle ({chain})")
    data = _read_mapping(path)
    files: list[Path] = []
    parent = data.pop(EXTENDS, None)
    if parent is not None:
        if not isinstance(parent, str):
            raise ConfigError(f"config file {path}: 'extends' must be a file name")
        files += _read_layers(path.parent / parent, values, origins, (*seen, resolved))
    _merge(values, origins, data, str(path), prefix="")
    return [*files, path]


def yaml_problem(exc: Exception) -> str:
    """Where and what a YAML parse error is, for a one-line message: ' at line 3: <problem>'."""
    mark = getattr(exc, "problem_mark", None)
    where = f" at line {mark.line + 1}" if mark is not None else ""
    return f"{where}: {getattr(exc, 'problem', None) or 'invalid YAML'}"


def _read_mapping(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ConfigError(f"config file {path} not found")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {path}: invalid YAML{yaml_problem(exc)}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"config file {path}: not UTF-8 text (byte {exc.start})") from None
    except ValueError as exc:  # a date-shaped value that is no date: YAML's date constructor refuses it
        raise ConfigError(f"config file {path}: a value is not a valid date ({exc})") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path}: expected a mapping of keys, got {type(data).__name__}")
    return data


def architecture_defaults(first_file: Path, architecture: str) -> Path:
    """Where `architecture`'s defaults live for a chain whose first file is `first_file`."""
    return first_file.parent / ARCHITECTURE_DEFAULTS / f"{architecture}.yaml"


def _architecture_layer(
    files: list[Path], values: dict[str, Any], origins: dict[str, str], architecture: str
) -> list[Path]:
    """Put the architecture's defaults over the values the chain's first file gave (and only those)."""
    first = files[0]
    path = architecture_defaults(first, architecture)
    if not path.is_file():
        return files
    data = _read_mapping(path)
    if EXTENDS in data:
        raise ConfigError(f"config file {path}: an architecture's defaults cannot use 'extends'")
    for key, value in _leaves(data, str(path), prefix=""):
        if _origin_of(origins, key) == str(first):
            _set_dotted(values, origins, key, value, origin=str(path))
    return [first, path, *files[1:]]


def _leaves(data: Mapping[str, Any], origin: str, prefix: str) -> Iterable[tuple[str, Any]]:
    for key, value in data.items():
        if not isinstance(key, str):
            raise ConfigError(f"config file {origin}: key {key!r} under '{prefix[:-1]}' is not a string")
        if isinstance(value, dict) and value:
            yield from _leaves(value, origin, prefix=f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", value


def _merge(
    into: dict[str, Any], origins: dict[str, str], data: Mapping[str, Any], origin: str, prefix: str
) -> None:
    for key, value in data.items():
        dotted = f"{prefix}{key}"
        if not isinstance(key, str):
            raise ConfigError(f"config file {origin}: key {key!r} under '{prefix[:-1]}' is not a string")
        if isinstance(value, dict):  # key by key, so each leaf's origin is known
            if not isinstance(into.get(key), dict):
                into[key] = {}
            _merge(into[key], origins, value, origin, prefix=f"{dotted}.")
        else:
            into[key] = value
        origins[dotted] = origin


def _parse_override(text: str) -> tuple[str, Any]:
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ConfigError(f"--set expects key=value, got {text!r}")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except (yaml.YAMLError, ValueError):  # ValueError: a date-shaped value that is no date (2024-13-45)
        value = raw
    return key, value


def _set_dotted(values: dict[str, Any], origins: dict[str, str], key: str, value: Any, origin: str) -> None:
    """Set a dotted key, checking each step against the dataclass tree so typos fail here."""
    node: dict[str, Any] = values
    cls: Any = Config
    parts = key.split(".")
    for i, part in enumerate(parts):
        hints = typing.get_type_hints(cls) if dataclasses.is_dataclass(cls) else {}
        if part not in hints or part == "source_files":
            raise ConfigError(_unknown(key, f"from {origin}"))
        field_type = _strip_optional(hints[part])
        last = i == len(parts) - 1
        nested = dataclasses.is_dataclass(field_type) or typing.get_origin(field_type) is dict
        if not last and not nested:
            raise ConfigError(_unknown(key, f"from {origin}"))
        if last:
            node[part] = value
            break
        if typing.get_origin(field_type) is dict:
            # A mapping field (e.g. spark.conf): the rest of the key, dots included, is one entry.
            entries = node.setdefault(part, {})
            if not isinstance(entries, dict):
                raise ConfigError(
                    f"config key '{'.'.join(parts[: i + 1])}' must be a mapping (from {origin})"
                )
            entries[".".join(parts[i + 1 :])] = value
            break
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"config key '{'.'.join(parts[: i + 1])}' is not a section (from {origin})")
        node, cls = child, field_type
    origins[key] = origin


def _unknown(key: str, where: str) -> str:
    """The line for a key no field holds: where an old key moved to, else that it is unknown."""
    moved = moved_key_message(key)
    return f"{moved} ({where})" if moved else f"unknown config key '{key}' ({where})"


def _strip_optional(tp: Any) -> Any:
    if typing.get_origin(tp) in (Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return tp


def _origin_of(origins: Mapping[str, str], key: str) -> str:
    while key:
        if key in origins:
            return origins[key]
        key = key.rpartition(".")[0]
    return "the configuration"


def _build(
    cls: Any,
    data: Any,
    origins: Mapping[str, str],
    prefix: str,
    skip: frozenset[str] | set[str] = frozenset(),
) -> Any:
    section = prefix[:-1] or "the top level"
    if not isinstance(data, dict):
        raise ConfigError(
            f"config key '{section}' must be a section, got {data!r} (in {_origin_of(origins, prefix[:-1])})"
        )
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.name not in skip}
    for key in data:
        if key not in fields:
            dotted = f"{prefix}{key}"
            raise ConfigError(_unknown(dotted, f"in {_origin_of(origins, dotted)}"))
    kwargs: dict[str, Any] = {}
    for name, _field in fields.items():
        dotted = f"{prefix}{name}"
        if name not in data:
            raise ConfigError(
                f"missing config key '{dotted}' (no file in the chain sets it; see conf/base.yaml)"
            )
        kwargs[name] = _coerce(hints[name], data[name], dotted, origins)
    return cls(**kwargs)


def _coerce(tp: Any, value: Any, key: str, origins: Mapping[str, str]) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    where = _origin_of(origins, key)
    if dataclasses.is_dataclass(tp):
        return _build(tp, value, origins, prefix=f"{key}.")
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        return _coerce(_strip_optional(tp), value, key, origins)
    if origin is Literal:
        if value not in args:
            choices = ", ".join(str(a) for a in args)
            raise ConfigError(f"config key '{key}' must be one of {choices}, got {value!r} (in {where})")
        return value
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"config key '{key}' must be a mapping, got {value!r} (in {where})")
        return {str(k): _scalar_text(v, f"{key}.{k}", origins) for k, v in value.items()}
    if origin is tuple:
        if not isinstance(value, list | tuple):
            raise ConfigError(f"config key '{key}' must be a list, got {value!r} (in {where})")
        return tuple(_coerce(args[0], v, key, origins) for v in value)
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"config key '{key}' must be true or false, got {value!r} (in {where})")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"config key '{key}' must be an integer, got {value!r} (in {where})")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"config key '{key}' must be a number, got {value!r} (in {where})")
        return float(value)
    if tp is str:
        if isinstance(value, dt.date):  # YAML reads 2024-01-31 as a date; a string field wants the text
            return value.isoformat()
        if not isinstance(value, str):
            raise ConfigError(f"config key '{key}' must be a string, got {value!r} (in {where})")
        return value
    raise TypeError(f"config field '{key}' has a type the loader does not support: {tp!r}")


def _scalar_text(value: Any, key: str, origins: Mapping[str, str]) -> str:
    """Mapping entries (Spark settings) are strings; YAML booleans become Spark's 'true'/'false'."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str | int | float):
        return str(value)
    raise ConfigError(
        f"config key '{key}' must be a single value, got {value!r} (in {_origin_of(origins, key)})"
    )
