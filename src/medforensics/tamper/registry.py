"""Attacks found by name, in the style of timm's ``register_model`` / ``create_model``."""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from typing import Any, TypeVar

import numpy as np

from medforensics.io.types import ImageVolume
from medforensics.tamper.base import Attack, AttackError, TamperResult

A = TypeVar("A", bound=type[Attack])

_REGISTRY: dict[str, type[Attack]] = {}

#: modules holding the built-in attacks, imported on first lookup (no import side effects)
_BUILTIN_MODULES = (
    "medforensics.tamper.inject",
    "medforensics.tamper.remove",
    "medforensics.tamper.copy_move",
    "medforensics.tamper.splice",
    "medforensics.tamper.inpaint",
    "medforensics.tamper.launder",
    "medforensics.tamper.synthetic",
    "medforensics.tamper.cubegan",
    "medforensics.tamper.ctgan_pipeline",
)


def register_attack(cls: A) -> A:
    """Class decorator adding an attack under its ``name``."""
    if not cls.name:
        raise ValueError(f"{cls.__qualname__} has no 'name'")
    if cls.name in _REGISTRY and _REGISTRY[cls.name] is not cls:
        raise ValueError(f"an attack named {cls.name!r} is already registered")
    _REGISTRY[cls.name] = cls
    return cls


def _load_builtins() -> None:
    for module in _BUILTIN_MODULES:
        importlib.import_module(module)


def list_attacks(modality: str | None = None) -> list[str]:
    """Names of the registered attacks, optionally only those that support ``modality``."""
    _load_builtins()
    return sorted(
        name
        for name, cls in _REGISTRY.items()
        if modality is None or not cls.modalities or modality in cls.modalities
    )


def create_attack(name: str, **kwargs: Any) -> Attack:
    """Instantiate the attack registered as ``name`` (``kwargs`` go to its constructor)."""
    _load_builtins()
    try:
        cls = _REGISTRY[name]
    except KeyError:
        known = ", ".join(sorted(_REGISTRY)) or "none"
        raise KeyError(f"unknown attack {name!r}; known attacks: {known}") from None
    return cls(**kwargs)


def seed_streams(seed: int | Sequence[int]) -> tuple[np.random.Generator, ...]:
    """Three independent generators: parameters, application noise, laundering.

    Keeping them apart means overriding a parameter, or adding laundering, never shifts the
    noise an attack draws, so results stay comparable across variations of one seed.
    """
    entropy = [int(seed)] if isinstance(seed, int | np.integer) else [int(s) for s in seed]
    return tuple(np.random.default_rng(s) for s in np.random.SeedSequence(entropy).spawn(3))


def simulate(
    volume: ImageVolume,
    attack: str,
    seed: int | Sequence[int],
    *,
    launder: Sequence[str] = (),
    options: dict[str, Any] | None = None,
    **overrides: Any,
) -> TamperResult:
    """Run one attack on ``volume``, reproducibly from ``seed``.

    Args:
        volume: the authentic image; it is not modified.
        attack: registry name (see ``list_attacks``).
        seed: integer seed, or a sequence of integers (e.g. ``[global_seed, case_index]``).
        launder: names of laundering operations applied afterwards to the whole image (see
            ``medforensics.tamper.launder.LAUNDER_OPS``); recorded under
            ``truth.params["laundering"]``. The mask stays the attack's footprint.
        options: keyword arguments for the attack's constructor (e.g. ``donor`` for splice).
        **overrides: parameter values that replace the sampled ones.

    Returns:
        The tampered pixels and their ground truth.
    """
    attacker = create_attack(attack, **(options or {}))
    attacker.check(volume)
    params_rng, apply_rng, launder_rng = seed_streams(seed)
    params = {**attacker.sample_params(volume, params_rng), **overrides}
    result = attacker.apply(volume, params, apply_rng)
    if launder:
        from medforensics.tamper.launder import launder_result

        result = launder_result(result, volume, list(launder), launder_rng)
    return result


__all__ = [
    "AttackError",
    "create_attack",
    "list_attacks",
    "register_attack",
    "seed_streams",
    "simulate",
]
