"""Small formatting helpers for messages written for people."""

from __future__ import annotations


def human_size(n_bytes: float) -> str:
    """``1536`` → ``"1.5 KiB"``: sizes in error messages."""
    for unit in ("bytes", "KiB", "MiB"):
        if n_bytes < 1024:
            return f"{n_bytes:.0f} {unit}" if unit == "bytes" else f"{n_bytes:.1f} {unit}"
        n_bytes /= 1024
    return f"{n_bytes:.1f} GiB"
