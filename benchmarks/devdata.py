"""What the dev scripts share: the ``--data`` option (``../shared/data``) and its check."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

#: the development data, beside the repository (see its README); never copied into it
DEFAULT_DATA = Path(__file__).parents[2] / "shared" / "data"


def data_parser(doc: str | None) -> argparse.ArgumentParser:
    """A parser described by ``doc``'s first line, with ``--data``."""
    parser = argparse.ArgumentParser(description=(doc or "").splitlines()[0] if doc else None)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="the shared data folder")
    return parser


def parse_data_args(
    parser: argparse.ArgumentParser, argv: list[str] | None
) -> argparse.Namespace | None:
    """The parsed arguments, or ``None`` (after saying so) when ``--data`` is no folder."""
    args = parser.parse_args(argv)
    if not args.data.is_dir():
        print(f"no data folder at {args.data}", file=sys.stderr)
        return None
    return args
