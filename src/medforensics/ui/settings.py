"""What the web app is told at start-up: detector, REST API, PACS. Read from the environment.

``medforensics ui`` turns its options into these variables before it starts Streamlit, so the
app script (which Streamlit runs in its own process) reads them back here. The API key itself
is never passed on a command line: only the *name* of the variable that holds it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

ENV_DETECTOR = "MEDFORENSICS_UI_DETECTOR"
ENV_API = "MEDFORENSICS_UI_API"
ENV_API_KEY_ENV = "MEDFORENSICS_UI_API_KEY_ENV"
ENV_DICOMWEB = "MEDFORENSICS_UI_DICOMWEB"
ENV_WORK_DIR = "MEDFORENSICS_UI_WORK_DIR"

DEFAULT_DETECTOR = "auto"
DEFAULT_API_KEY_ENV = "MEDFORENSICS_API_KEY"


@dataclass(frozen=True)
class UiSettings:
    """How the app analyses and where it may fetch studies.

    Attributes:
        detector: registry name of the detector used for local analysis.
        api_url: base URL of a ``medforensics serve`` instance; when set, analyses are posted
            there instead of running in the app.
        api_key_env: name of the environment variable holding the API key.
        dicomweb_url: DICOMweb base URL of a PACS to pick studies from, if any.
        work_dir: parent of the per-session temporary folders (default: the system's).
    """

    detector: str = DEFAULT_DETECTOR
    api_url: str | None = None
    api_key_env: str = DEFAULT_API_KEY_ENV
    dicomweb_url: str | None = None
    work_dir: str | None = None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> UiSettings:
        env = os.environ if environ is None else environ
        return cls(
            detector=env.get(ENV_DETECTOR, "").strip() or DEFAULT_DETECTOR,
            api_url=env.get(ENV_API, "").strip() or None,
            api_key_env=env.get(ENV_API_KEY_ENV, "").strip() or DEFAULT_API_KEY_ENV,
            dicomweb_url=env.get(ENV_DICOMWEB, "").strip() or None,
            work_dir=env.get(ENV_WORK_DIR, "").strip() or None,
        )

    def to_env(self) -> dict[str, str]:
        """The variables that make ``from_env`` give these settings back."""
        env = {ENV_DETECTOR: self.detector, ENV_API_KEY_ENV: self.api_key_env}
        if self.api_url:
            env[ENV_API] = self.api_url
        if self.dicomweb_url:
            env[ENV_DICOMWEB] = self.dicomweb_url
        if self.work_dir:
            env[ENV_WORK_DIR] = self.work_dir
        return env

    @property
    def remote(self) -> bool:
        """True when analyses go to the REST API."""
        return self.api_url is not None

    def api_key(self, environ: Mapping[str, str] | None = None) -> str | None:
        env = os.environ if environ is None else environ
        return env.get(self.api_key_env) or None
