"""Pick a study and series from the configured PACS (DICOMweb); hands back its files as uploads."""

from __future__ import annotations

import streamlit as st

from medforensics.gateway.dicomweb import DicomwebError
from medforensics.ui import state
from medforensics.ui.pacs import StudyRow, fetch_series, list_series, search_studies
from medforensics.ui.session import Upload
from medforensics.ui.settings import UiSettings

STUDIES_KEY = "mf_pacs_studies"


@st.cache_resource(show_spinner=False)
def _client(url: str) -> object:
    from medforensics.gateway.dicomweb import make_client

    return make_client(url)


def show(settings: UiSettings) -> tuple[list[Upload], str] | None:
    """The picker's widgets; the chosen series' files when "Analyse" is pressed, else None."""
    assert settings.dicomweb_url is not None
    st.caption(f"PACS: {settings.dicomweb_url} (DICOMweb). Nothing is stored back from here.")
    patient = st.text_input("Patient ID (optional, * allowed)", key="pacs_patient")
    try:
        client = _client(settings.dicomweb_url)
    except Exception as exc:  # the gateway extra is missing, or the URL is unusable
        st.error(f"PACS {settings.dicomweb_url}: cannot connect ({exc})")
        return None
    if st.button("Search the PACS", key="pacs_search"):
        try:
            st.session_state[STUDIES_KEY] = search_studies(client, patient)
        except DicomwebError as exc:
            st.error(f"PACS {settings.dicomweb_url}: {exc}")
            return None
    studies: list[StudyRow] = st.session_state.get(STUDIES_KEY) or []
    if not studies:
        st.info("Search the PACS to list its studies.")
        return None
    study = st.selectbox("Study", studies, format_func=lambda row: row.label, key="pacs_study")
    try:
        series = list_series(client, study.study_uid)
    except DicomwebError as exc:
        st.error(f"PACS {settings.dicomweb_url}: {exc}")
        return None
    usable = [row for row in series if row.skip is None]
    if not usable:
        st.warning("This study has no series with images to analyse.")
        return None
    chosen = st.selectbox("Series", usable, format_func=lambda row: row.label, key="pacs_series")
    if not st.button("Analyse this series", type="primary", key="pacs_analyse"):
        return None
    folder = state.session_files().new_folder("pacs")
    with st.spinner("Retrieving the series (WADO-RS)…"):
        try:
            paths = fetch_series(client, study.study_uid, chosen.series_uid, folder)
        except DicomwebError as exc:
            st.error(f"PACS {settings.dicomweb_url}: {exc}")
            return None
    uploads = [Upload(path.name, path.read_bytes()) for path in paths]
    state.session_files().discard(folder)
    label = f"{study.label} / {chosen.description or chosen.series_uid}"
    return uploads, label
