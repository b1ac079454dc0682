"""model.pt: the trained model a training run writes, and the only code that reads it back
(for evaluation and maps, which need the model but not the training code). The safe loader
here reads checkpoint.pt too (:mod:`mmssl.train.checkpoint`).

Both run files are ``torch.save`` files read with ``torch.load(..., weights_only=True)``:
torch's restricted unpickler, which rebuilds tensors and plain containers (dict, list,
tuple, str, int, float, bool, None) and refuses every other Python object. A model file
someone sends you therefore cannot run code when it is loaded, as an unrestricted
pickle can. Everything that is not a tensor (method, settings, sources, the metrics so
far, numpy's RNG state) is kept as one JSON string under ``meta``.

model.pt (the ``train`` rule's declared output)::

    format      int                      FORMAT
    meta        str, JSON object         method, fold, status ('ok' | 'diverged'), epochs,
                                         sources [{name, channels, size, dims}],
                                         model_settings, train_settings, device,
                                         selected_epoch (the epoch whose weights these are:
                                         train.select best = lowest validation loss)
    state_dict  {name: tensor} or None   the selected weights; None for a diverged run

Files of older mmssl versions pickled whole Python objects (dataclasses, numpy state);
the safe loader refuses them with an error that names the file and says to delete it
and retrain.
"""

from __future__ import annotations

import json
import pickle
from pathlib import Path
from typing import Any

import torch

from mmssl.io import atomic_path
from mmssl.objectives.registry import build_method
from mmssl.objectives.base import Method, ModelSettings
from mmssl.types import SourceSpec

# version of the layout of model.pt and checkpoint.pt; bumped whenever either changes, so
# an old file is named as such
FORMAT = 2


class RunFileError(ValueError):
    """A model.pt / checkpoint.pt that this version cannot (or will not) read."""


def safe_load(path: Path, kind: str) -> dict[str, Any]:
    """The payload of ``path`` (a model or checkpoint file), loaded on the CPU with the
    weights-only unpickler; RunFileError for anything else."""
    try:
        # CPU: RNG states must be CPU tensors, and load_state_dict copies weights onto
        # the model's device anyway
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        reason = next((line.strip() for line in str(err).splitlines() if "WeightsUnpickler error" in line),
                      str(err).splitlines()[0] if str(err) else type(err).__name__)
        raise RunFileError(
            f"{path}: refused to load this {kind} file: it holds pickled Python objects, which could run "
            f"arbitrary code when loaded (files written by mmssl before format {FORMAT} are like this). "
            f"Delete {path} and retrain to rewrite it. ({reason[:300]})"
        ) from err
    if not isinstance(payload, dict) or payload.get("format") != FORMAT or not isinstance(payload.get("meta"), str):
        found = payload.get("format") if isinstance(payload, dict) else type(payload).__name__
        raise RunFileError(f"{path}: not an mmssl {kind} file of format {FORMAT} (found {found!r}). "
                           f"Delete {path} and retrain to rewrite it.")
    return payload


def model_meta(method: str, fold: int, status: str, epochs: int, sources: list[dict[str, Any]],
               model_settings: dict[str, Any], train_settings: dict[str, Any], device: str) -> dict[str, Any]:
    """The ``meta`` of a model file: everything needed to rebuild the model, its status, and
    the versions that made it (:func:`mmssl.version.provenance`)."""
    from mmssl.version import provenance

    return {"method": method, "fold": fold, "status": status, "epochs": epochs, "sources": sources,
            "model_settings": model_settings, "train_settings": train_settings, "device": device,
            "versions": provenance()}


def save_model(path: str | Path, meta: dict[str, Any], state_dict: dict[str, torch.Tensor] | None) -> Path:
    """Write model.pt atomically; ``state_dict`` None for a run that did not finish well."""
    payload = {"format": FORMAT, "meta": json.dumps(meta, sort_keys=True), "state_dict": state_dict}
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
    return Path(path)


def read_model(path: str | Path) -> tuple[dict[str, Any], dict[str, torch.Tensor] | None]:
    """(meta, state dict on the CPU or None) of a model file written by :func:`save_model`."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: trained model not found")
    payload = safe_load(path, "model")
    return json.loads(payload["meta"]), payload["state_dict"]


def load_model(path: str | Path, device: str | torch.device = "cpu") -> tuple[Method | None, dict[str, Any]]:
    """The trained model of ``path`` on ``device`` in eval mode, and its meta; (None, meta)
    for a diverged run."""
    meta, state = read_model(path)
    if meta["status"] != "ok":
        return None, meta
    sources = [SourceSpec(**s) for s in meta["sources"]]
    model = build_method(meta["method"], sources, ModelSettings(**meta["model_settings"]))
    model.load_state_dict(state)
    return model.to(device).eval(), meta

