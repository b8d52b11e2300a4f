"""What the app keeps between Streamlit reruns: settings, the session's folder, the detector.

Only this module and the page modules import Streamlit; the rest of ``medforensics.ui`` is plain
Python that tests can call directly.
"""

from __future__ import annotations

from typing import Any

import streamlit as st

from medforensics.detect.base import Detector
from medforensics.ui.session import SessionFiles, Upload
from medforensics.ui.settings import UiSettings

_FILES_KEY = "mf_session_files"


def settings() -> UiSettings:
    """The app's settings (read from the environment ``medforensics ui`` prepared)."""
    return UiSettings.from_env()


def session_files() -> SessionFiles:
    """This browser session's private temporary folder (created on first use)."""
    files = st.session_state.get(_FILES_KEY)
    if not isinstance(files, SessionFiles) or not files.alive:
        files = SessionFiles(settings().work_dir)
        st.session_state[_FILES_KEY] = files
    return files


@st.cache_resource(show_spinner="Loading the detector…")
def cached_detector(name: str) -> Detector:
    """One detector instance per name for the whole server: models load once."""
    from medforensics.detect import create_detector

    return create_detector(name)


def detector() -> Detector:
    return cached_detector(settings().detector)


def service_client() -> Any:
    """The REST client (``--api``); only called when the settings name a service."""
    from medforensics.ui.client import ServiceClient

    current = settings()
    assert current.api_url is not None
    return ServiceClient(current.api_url, current.api_key())


def uploads_of(files: Any) -> list[Upload]:
    """``st.file_uploader``'s value (one file, several, or None) as ``Upload`` objects."""
    if files is None:
        return []
    listed = files if isinstance(files, list) else [files]
    return [Upload(f.name, f.getvalue()) for f in listed]


def upload_key(files: Any) -> str:
    """Identifies one set of uploaded files, to analyse each set once."""
    if files is None:
        return ""
    listed = files if isinstance(files, list) else [files]
    return "|".join(f"{getattr(f, 'file_id', '')}:{f.name}:{f.size}" for f in listed)
