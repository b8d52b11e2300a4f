"""The attack simulator: one attack per module, a registry, seeded and reproducible.

Quick use::

    from medforensics.tamper import simulate
    result = simulate(volume, "inject", seed=7, launder=["jpeg"])
    result.pixels, result.truth.mask, result.truth.label  # "FM": a fake lesion was injected

Attacks are imported lazily on first lookup; importing this package loads no attack module.
"""

from __future__ import annotations

from medforensics.tamper.base import (
    LABELS,
    Attack,
    AttackError,
    GroundTruth,
    Label,
    Params,
    TamperResult,
)
from medforensics.tamper.registry import (
    create_attack,
    list_attacks,
    register_attack,
    seed_streams,
    simulate,
)

__all__ = [
    "LABELS",
    "Attack",
    "AttackError",
    "GroundTruth",
    "Label",
    "Params",
    "TamperResult",
    "create_attack",
    "list_attacks",
    "register_attack",
    "seed_streams",
    "simulate",
]
