"""Detectors found by name, in the style of timm's ``register_model`` / ``create_model``."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import TypeVar

from medforensics.detect.base import Detector

D = TypeVar("D", bound=type[Detector])

_REGISTRY: dict[str, type[Detector]] = {}

#: modules holding the built-in detectors, imported on first lookup (no import side effects)
_BUILTIN_MODULES = ("medforensics.detect.noise_residual",)


def register_detector(cls: D) -> D:
    """Class decorator adding a detector under its ``name``."""
    if not cls.name:
        raise ValueError(f"{cls.__qualname__} has no 'name'")
    if cls.name in _REGISTRY and _REGISTRY[cls.name] is not cls:
        raise ValueError(f"a detector named {cls.name!r} is already registered")
    _REGISTRY[cls.name] = cls
    return cls


def _load_builtins() -> None:
    for module in _BUILTIN_MODULES:
        importlib.import_module(module)


def list_detectors() -> list[str]:
    _load_builtins()
    return sorted(_REGISTRY)


def create_detector(name: str, **kwargs: object) -> Detector:
    """Instantiate the detector registered as ``name``."""
    _load_builtins()
    try:
        cls: Callable[..., Detector] = _REGISTRY[name]
    except KeyError:
        known = ", ".join(sorted(_REGISTRY)) or "none"
        raise KeyError(f"unknown detector {name!r}; known detectors: {known}") from None
    return cls(**kwargs)
