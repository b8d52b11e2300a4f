"""Detectors found by name, in the style of timm's ``register_model`` / ``create_model``."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import TypeVar

from medforensics.detect.base import Detector

D = TypeVar("D", bound=type[Detector])

_REGISTRY: dict[str, type[Detector]] = {}

#: where each built-in detector lives; a module is imported only when one of its detectors is
#: asked for, so ``noise-residual`` never pays for importing torch (no import side effects)
_BUILTINS = {
    "noise-residual": "medforensics.detect.noise_residual",
    "classical": "medforensics.detect.classical",
    "copy-move": "medforensics.detect.clone",
    "synthetic-2d": "medforensics.detect.synthetic2d",
    "metadata": "medforensics.detect.metadata",
    "signature": "medforensics.detect.signature",
    "ct-local": "medforensics.detect.local",
    "xr-local": "medforensics.detect.local",
    "mr-local": "medforensics.detect.local",
    "auto": "medforensics.detect.auto",
    "global-cnn": "medforensics.detect.global_net",
    "global-vit": "medforensics.detect.global_net",
    "densenet121-slice": "medforensics.detect.global_net",
    "patch-cascade": "medforensics.detect.patch_cascade",
    "resampling": "medforensics.detect.resampling",
    "noise-hole": "medforensics.detect.noise_hole",
    "noise-mismatch": "medforensics.detect.noise_mismatch",
}


def register_detector(cls: D) -> D:
    """Class decorator adding a detector under its ``name``."""
    if not cls.name:
        raise ValueError(f"{cls.__qualname__} has no 'name'")
    if cls.name in _REGISTRY and _REGISTRY[cls.name] is not cls:
        raise ValueError(f"a detector named {cls.name!r} is already registered")
    _REGISTRY[cls.name] = cls
    return cls


def _load_builtins(name: str | None = None) -> None:
    """Import the module of built-in detector ``name``, or of every built-in when None."""
    if name is not None and name in _REGISTRY:
        return
    modules = {_BUILTINS[name]} if name in _BUILTINS else set(_BUILTINS.values())
    for module in sorted(modules):
        importlib.import_module(module)


def list_detectors() -> list[str]:
    _load_builtins()
    return sorted(set(_REGISTRY) | set(_BUILTINS))


def create_detector(name: str, **kwargs: object) -> Detector:
    """Instantiate the detector registered as ``name``."""
    _load_builtins(name)
    try:
        cls: Callable[..., Detector] = _REGISTRY[name]
    except KeyError:
        known = ", ".join(sorted(_REGISTRY)) or "none"
        raise KeyError(f"unknown detector {name!r}; known detectors: {known}") from None
    return cls(**kwargs)
