"""The Streamlit web app (``medforensics ui``): analyse, batch, simulator, about.

``APP_PATH`` is the script Streamlit runs. The pages only lay things out: analysis goes through
``medforensics.scan`` (or the REST API, ``ui.client``), pictures through ``medforensics.explain``,
reports through ``medforensics.report``.
"""

from __future__ import annotations

from pathlib import Path

from medforensics.ui.settings import UiSettings

#: the Streamlit script
APP_PATH = Path(__file__).with_name("app.py")

__all__ = ["APP_PATH", "UiSettings"]
