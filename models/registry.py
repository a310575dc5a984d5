"""The model registry and logged models, as the jobs read them: a registered version from a
models:/ URI, its files and metadata, and a pyfunc checked against the catalog it is asked to rank.
Every failure a user can cause is bad input (InputError, exit 2) naming the URI."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from downbeat.models.tracking import kept_logging
from downbeat.pipelines.errors import InputError, first_line


def load_pyfunc(uri: str, tracking_uri: str, tracks: Any, root: str) -> Any:
    """The MLflow model at `uri`; bad input (exit 2) when it cannot load or was trained on another
    catalog than `tracks` (the gold/tracks snapshot): another size, or (for models that record it)
    other ids for the same tracks, as a rebuild after new plays can give."""
    import mlflow
    from mlflow.exceptions import MlflowException

    mlflow.set_tracking_uri(tracking_uri)
    try:
        with kept_logging():  # a models:/ URI opens the registry's store, which may migrate it
            model = mlflow.pyfunc.load_model(uri)
    except (MlflowException, OSError) as exc:
        raise InputError(f"--model-uri {uri}: {first_line(exc)}") from None
    check_catalog(uri, model.metadata.metadata or {}, tracks, root)
    return model


def check_catalog(uri: str, metadata: dict[str, Any], tracks: Any, root: str) -> None:
    """Bad input (exit 2) unless the model's recorded catalog is the gold/tracks snapshot's."""
    from downbeat.models.serving import tracks_fingerprint

    trained_on = metadata.get("n_tracks")
    if trained_on is not None and int(trained_on) != tracks.rows:
        raise InputError(
            f"--model-uri {uri} was trained on {trained_on} tracks but gold/tracks version "
            f"{tracks.version} under {root} has {tracks.rows}: not the same catalog"
        )
    recorded = metadata.get("catalog")
    if recorded is None:
        return
    found = tracks_fingerprint(tracks)
    if found != recorded:
        raise InputError(
            f"--model-uri {uri} was trained on catalog {recorded} (gold/tracks version "
            f"{metadata.get('tracks_version', '?')}) but gold/tracks version {tracks.version} under {root} "
            f"gives its {tracks.rows} tracks other ids (catalog {found}): not the same "
            "catalog; retrain on it"
        )


def registered_version(uri: str, tracking_uri: str) -> tuple[str, str, str]:
    """(name, version, run id) of a models:/NAME@ALIAS or models:/NAME/VERSION URI; bad input
    (exit 2) for any other URI or one the registry does not know."""
    import mlflow
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    mlflow.set_tracking_uri(tracking_uri)  # the registry, and where models:/ URIs download from
    rest = uri.removeprefix("models:/") if uri.startswith("models:/") else None
    alias = version = None
    if rest and "@" in rest and "/" not in rest:
        name, alias = rest.split("@", 1)
    elif rest and rest.count("/") == 1:
        name, version = rest.split("/")
    else:
        raise InputError(
            f"--model-uri {uri}: name a registered model (models:/NAME@ALIAS or models:/NAME/VERSION); "
            "gold/recommendations rows are keyed by model version"
        )
    client = MlflowClient(tracking_uri)
    try:
        with kept_logging():  # opening a fresh sqlite store runs alembic, which resets logging
            found = (
                client.get_model_version_by_alias(name, alias)
                if alias is not None
                else client.get_model_version(name, str(version))
            )
    except MlflowException as exc:
        raise InputError(f"--model-uri {uri}: {first_line(exc)}") from None
    return str(found.name), str(found.version), str(found.run_id)


def aliased_versions(name: str, tracking_uri: str) -> set[str]:
    """The versions of registered model `name` that hold an alias (champion, candidate, ...)."""
    from mlflow.tracking import MlflowClient

    with kept_logging():
        aliases = MlflowClient(tracking_uri).get_registered_model(name).aliases
    return {str(v) for v in aliases.values()}


def download_model(uri: str, into: Path) -> Path:
    """The model's files in the local folder `into` (to ship to the executors)."""
    import mlflow

    into.mkdir(parents=True)
    try:
        mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=str(into))
        return into
    except Exception as exc:
        raise InputError(f"--model-uri {uri}: its files could not be downloaded: {first_line(exc)}") from None


def load_metadata(uri: str, local: Path) -> dict[str, Any]:
    """The logged model's metadata; bad input (exit 2) unless it was logged with batch recommendation
    (its code carries recommend_frame)."""
    from mlflow.models import Model

    try:
        model = Model.load(str(local))
    except Exception as exc:
        raise InputError(f"--model-uri {uri}: {first_line(exc)}") from None
    metadata = dict(model.metadata or {})
    if "catalog" not in metadata:
        raise InputError(
            f"--model-uri {uri} was logged before batch recommendation existed (its metadata names no "
            "catalog): retrain it"
        )
    return metadata
