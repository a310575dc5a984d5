"""Model names to architectures, and the `model` config section that holds each one's settings.

Adding a model: its file (models/<name>.py: the class and, if it has knobs, a settings dataclass
with a default for every field), its line in ARCHITECTURES and its settings' line in
ModelSettings; conf/base.yaml then lists the settings under `model.<name>`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from downbeat.models.bert4rec import BERT4Rec, BERT4RecSettings
from downbeat.models.caser import Caser, CaserSettings
from downbeat.models.gru4rec import GRU4Rec, GRU4RecSettings
from downbeat.models.gsasrec import GSASRec, GSASRecSettings
from downbeat.models.hybrid import OBJECTIVES, Hybrid, HybridSettings
from downbeat.models.network import Recommender
from downbeat.models.pnfrec import PNFRec, PNFRecSettings
from downbeat.models.pooled import Pooled, PooledSettings
from downbeat.models.popularity import Popularity
from downbeat.models.sasrec import SASRec, SASRecSettings
from downbeat.models.settings import MODEL_NAMES, MOVED_KEYS, NetworkSettings

# Each is built as (n_tracks, n_stations, network settings, its own settings, positive feedback).
ARCHITECTURES: dict[str, type[Recommender[Any]]] = {
    "baseline": Hybrid,  # the hybrid's network reading positives only, random negatives only
    "hybrid": Hybrid,
    "sasrec": SASRec,
    "gsasrec": GSASRec,
    "gru4rec": GRU4Rec,
    "caser": Caser,
    "pnfrec": PNFRec,
    "bert4rec": BERT4Rec,
    "pooled": Pooled,
    "popularity": Popularity,
}
NETWORK_FIELDS = frozenset(f.name for f in dataclasses.fields(NetworkSettings))
# The `model.<section>` a model reads its own settings from, where it is not the model's name.
SECTIONS = {"baseline": "hybrid"}


@dataclass(frozen=True)
class ModelSettings(NetworkSettings):
    """Config section `model`: the network every architecture shares, and each one's own knobs."""

    hybrid: HybridSettings = field(default_factory=HybridSettings)  # baseline and hybrid
    sasrec: SASRecSettings = field(default_factory=SASRecSettings)
    gsasrec: GSASRecSettings = field(default_factory=GSASRecSettings)
    gru4rec: GRU4RecSettings = field(default_factory=GRU4RecSettings)
    caser: CaserSettings = field(default_factory=CaserSettings)
    bert4rec: BERT4RecSettings = field(default_factory=BERT4RecSettings)
    pnfrec: PNFRecSettings = field(default_factory=PNFRecSettings)
    pooled: PooledSettings = field(default_factory=PooledSettings)


# The subsections of `model`, one per architecture's own settings (the rest are the network's sizes)
SECTION_FIELDS = tuple(f.name for f in dataclasses.fields(ModelSettings) if f.name not in NETWORK_FIELDS)


def model_settings_of(values: dict[str, Any]) -> ModelSettings:
    """ModelSettings from a plain mapping laid out as the `model` section (conf/base.yaml's, read
    without the config loader: benchmarks and model tests, which need no Spark)."""
    defaults = ModelSettings()
    built = {k: type(getattr(defaults, k))(**v) if k in SECTION_FIELDS else v for k, v in values.items()}
    return ModelSettings(**built)


def network_settings(model: NetworkSettings) -> NetworkSettings:
    """The shared network's sizes alone (what a checkpoint keeps beside the model's own settings)."""
    return NetworkSettings(**{name: getattr(model, name) for name in NETWORK_FIELDS})


def section_of(name: str) -> str | None:
    """The `model.<section>` holding `name`'s own settings; None for a model without any."""
    section = SECTIONS.get(name, name)
    return section if section in SECTION_FIELDS else None


def own_settings(name: str, model: ModelSettings) -> Any:
    """The settings `name` is built with (None for a model without any)."""
    section = section_of(name)
    return None if section is None else getattr(model, section)


def with_own_settings(name: str, network: dict[str, Any], own: dict[str, Any] | None) -> ModelSettings:
    """ModelSettings from a checkpoint's network sizes and the model's own settings (the other
    sections keep their defaults: the model never reads them)."""
    model = ModelSettings(**{k: v for k, v in network.items() if k in NETWORK_FIELDS})
    section = section_of(name)
    if section is None or own is None:
        return model
    current = getattr(model, section)
    return dataclasses.replace(model, **{section: type(current)(**own)})


def own_settings_from_flat(name: str, train: dict[str, Any]) -> dict[str, Any]:
    """A checkpoint written before the settings were split keeps every knob in one flat `train`
    dict: the ones `name`'s own settings now hold, under their new names."""
    section = section_of(name)
    out: dict[str, Any] = {}
    for old, new_keys in MOVED_KEYS.items():
        key = old.split(".", 1)[1]
        for new in new_keys:
            parts = new.split(".")
            if parts[0] == "model" and parts[1] == section and key in train:
                out[parts[2]] = train[key]
    return out


def learns_by_gradient(name: str) -> bool:
    """Whether a model trains by gradient steps (fit()), or in one counting pass (popularity)."""
    return name not in ARCHITECTURES or ARCHITECTURES[name].learns_by_gradient


def objective_of(name: str) -> str:
    """What `name` is trained for, in a line."""
    if name in OBJECTIVES:  # baseline and hybrid: one class
        return OBJECTIVES[name]
    return ARCHITECTURES[name].objective if name in ARCHITECTURES else name


def build_model(
    name: str,
    n_tracks: int,
    n_stations: int,
    settings: ModelSettings,
    positive_feedback: tuple[int, ...],
) -> Recommender[Any]:
    """A fresh model: `baseline` and `hybrid` share the bidirectional network (the baseline reads
    positives only); the others are one class each (models/<name>.py)."""
    if name not in ARCHITECTURES:
        raise ValueError(f"model {name!r} is not one of {', '.join(MODEL_NAMES)}")
    own = own_settings(name, settings)
    if name in ("baseline", "hybrid"):
        baseline = name == "baseline"
        return Hybrid(n_tracks, n_stations, settings, own, positive_feedback, positives_only=baseline)
    architecture: Any = ARCHITECTURES[name]
    return architecture(n_tracks, n_stations, settings, own, positive_feedback)
