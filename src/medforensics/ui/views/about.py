"""The About page: version, the model that answers, what the method cannot do, privacy."""

from __future__ import annotations

import streamlit as st

from medforensics.__about__ import __version__
from medforensics.report.evidence import METHOD_LIMITS, model_card_summary
from medforensics.ui import state
from medforensics.ui.settings import UiSettings


def show(settings: UiSettings) -> None:
    st.title("About medforensics")
    st.markdown(
        f"**medforensics {__version__}** detects tampered and AI-generated medical images (CT, "
        "X-ray, MRI): where, why and how sure. It is a tool for review by a qualified person."
    )
    st.markdown("#### Where analyses run")
    if settings.remote:
        st.write(f"On the analysis service at {settings.api_url} (REST API, docs/service.md).")
    else:
        st.write(f"In this app, with the detector `{settings.detector}`.")
    if settings.dicomweb_url:
        st.write(f"Studies can be picked from the PACS at {settings.dicomweb_url} (DICOMweb).")
    st.markdown("#### Model")
    if settings.remote:
        _remote_models()
    else:
        try:
            described = state.detector().describe()
        except Exception as exc:
            st.error(f"The detector '{settings.detector}' could not be loaded: {exc}")
        else:
            summary = model_card_summary(described)
            st.dataframe(
                [{"": k, "value": str(v)} for k, v in summary.items()],
                hide_index=True,
                width="stretch",
            )
            with st.expander("Model card (full description)"):
                st.json(described, expanded=False)
    st.markdown("#### Limits")
    for limit in METHOD_LIMITS:
        st.markdown(f"- {limit}")
    st.caption(
        "Measured figures and the commands behind them: README, section 'Limits of the current "
        "detectors', and docs/detectors.md."
    )
    st.markdown("#### Your files")
    st.write(
        "Uploads are copied into a private temporary folder of this browser session (mode 0700) "
        "and deleted when the session ends or the app stops; the files you chose are never "
        "changed. "
        + (
            "In REST mode the uploads are sent to the analysis service named above."
            if settings.remote
            else "Nothing leaves this computer."
        )
    )


def _remote_models() -> None:
    try:
        listed = state.service_client().models()
    except Exception as exc:
        st.error(str(exc))
        return
    for model in listed.get("models") or []:
        marker = " (active)" if model.get("active") else ""
        with st.expander(f"{model.get('name')}{marker}", expanded=bool(model.get("active"))):
            st.json(model.get("description") or {"error": model.get("error")}, expanded=False)
