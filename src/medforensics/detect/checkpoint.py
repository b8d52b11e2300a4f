"""One file per trained model: weights plus everything needed to use and judge them.

A checkpoint is a ``torch.save`` of ``{"format", "meta", "state_dict"}`` where ``meta`` is plain
JSON data (architecture, preprocessing, calibration, operating point, model card). It is read
with ``torch.load(weights_only=True)``, so opening a checkpoint from someone else cannot run code.
A JSON copy of ``meta`` is written beside it (``NAME.card.json``) for people and reviewers.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import torch

FORMAT = "medforensics-checkpoint/1"


class CheckpointError(ValueError):
    """A checkpoint file is missing, unreadable or not one of ours."""


def card_path(path: str | Path) -> Path:
    path = Path(path)
    return path.with_name(path.stem + ".card.json")


def save_checkpoint(
    path: str | Path, state_dict: dict[str, torch.Tensor], meta: dict[str, Any]
) -> Path:
    """Write weights and ``meta`` atomically; returns the path written."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    json.dumps(meta)  # fail early, with a clear error, on anything not JSON
    payload = {
        "format": FORMAT,
        "meta": meta,
        "state_dict": {k: v.detach().cpu() for k, v in state_dict.items()},
    }
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    os.close(fd)
    try:
        torch.save(payload, tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    card_path(path).write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    return path


def load_checkpoint(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Weights and meta of a checkpoint written by ``save_checkpoint``."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such model file")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise CheckpointError(f"{path}: not a readable model checkpoint ({exc})") from exc
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a medforensics checkpoint (expected format {FORMAT})")
    return payload["state_dict"], payload["meta"]
