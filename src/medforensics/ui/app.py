"""The Streamlit script behind ``medforensics ui`` (``streamlit run`` runs this file).

Settings come from the environment (``medforensics.ui.settings``); each page is one module of
``medforensics.ui.views``. An unexpected error on a page becomes a message, never a stack trace.
"""

from __future__ import annotations

import streamlit as st

from medforensics.__about__ import __version__
from medforensics.ui import state
from medforensics.ui.views import about, analyse, batch, simulator

PAGES = {
    "Analyse": analyse.show,
    "Batch": batch.show,
    "Simulator": simulator.show,
    "About": about.show,
}


def main() -> None:
    st.set_page_config(page_title="medforensics", page_icon=":material/biotech:", layout="wide")
    settings = state.settings()
    with st.sidebar:
        st.markdown(f"### medforensics {__version__}")
        page = st.radio("Page", list(PAGES), key="page")
        if settings.remote:
            st.caption(f"Analyses run on the service at {settings.api_url}.")
        else:
            st.caption(f"Analyses run here, detector `{settings.detector}`.")
        if settings.dicomweb_url:
            st.caption(f"PACS: {settings.dicomweb_url}")
        st.caption("Uploads stay in a private temporary folder and are deleted afterwards.")
    try:
        PAGES[page](settings)
    except Exception as exc:  # the last line of defence: a message, never a stack trace
        st.error(
            f"The {page} page hit an internal error ({type(exc).__name__}: {exc}). Nothing you "
            "uploaded was changed. Please report it with the output of 'medforensics env'.",
            icon=":material/error:",
        )


main()
