"""The Simulator page: tamper an uploaded scan with one attack, for training and demonstration."""

from __future__ import annotations

import streamlit as st

from medforensics.tamper.base import AttackError
from medforensics.ui import state
from medforensics.ui.analysis import make_item, sources_label
from medforensics.ui.settings import UiSettings
from medforensics.ui.simulate import (
    SIMULATED_NOTICE,
    Loaded,
    Simulation,
    load_for_simulation,
    run_simulation,
)
from medforensics.ui.viewer import MapView, View, mask_png, render_png, slice_png, window_presets
from medforensics.ui.views.common import download_buttons, findings_table, verdict_banner

LOADED_KEY = "mf_sim_loaded"
LOADED_FOR_KEY = "mf_sim_loaded_for"
SIMULATION_KEY = "mf_simulation"
CHECK_KEY = "mf_sim_check"


def notice() -> None:
    st.markdown(
        '<div class="mf-simulated" style="background:#6a1b9a;color:#ffffff;padding:0.6rem 1rem;'
        'border-radius:0.5rem;font-size:1.3rem;font-weight:700;margin-bottom:0.5rem">'
        f"{SIMULATED_NOTICE}</div>",
        unsafe_allow_html=True,
    )


def show(settings: UiSettings) -> None:
    st.title("Attack simulator")
    notice()
    st.caption(
        "Runs one attack of the simulator (medforensics.tamper) on a scan you upload, so you can "
        "see what an edit looks like, where it is, and whether the detector finds it. The "
        "outputs are fabricated images: never put them back into a clinical archive."
    )
    uploaded = st.file_uploader(
        "A scan to tamper (DICOM file(s), a zip of a series, NIfTI, PNG or JPEG)",
        accept_multiple_files=True,
        key="sim_upload",
    )
    key = state.upload_key(uploaded)
    if not key:
        for name in (LOADED_KEY, LOADED_FOR_KEY, SIMULATION_KEY, CHECK_KEY):
            st.session_state.pop(name, None)
        return
    if st.session_state.get(LOADED_FOR_KEY) != key:
        uploads = state.uploads_of(uploaded)
        with st.spinner(f"Reading {sources_label([u.name for u in uploads])}…"):
            st.session_state[LOADED_KEY] = load_for_simulation(uploads, state.session_files())
        st.session_state[LOADED_FOR_KEY] = key
        st.session_state.pop(SIMULATION_KEY, None)
        st.session_state.pop(CHECK_KEY, None)
    loaded: Loaded = st.session_state[LOADED_KEY]
    for error in loaded.errors:
        st.error(error, icon=":material/error:")
    if not loaded.volumes:
        return
    index = 0
    if len(loaded.volumes) > 1:
        index = st.selectbox(
            "Series or image",
            range(len(loaded.volumes)),
            format_func=lambda k: loaded.names[k],
            key="sim_volume",
        )
    volume, name = loaded.volumes[index], loaded.names[index]
    from medforensics.tamper.registry import list_attacks

    attacks = list_attacks(volume.modality)
    left, middle, right = st.columns([2, 1, 1])
    attack = left.selectbox(
        "Attack",
        attacks,
        index=attacks.index("copy-move") if "copy-move" in attacks else 0,
        key="sim_attack",
    )
    seed = int(middle.number_input("Seed", 0, 2**31 - 1, 0, step=1, key="sim_seed"))
    right.write("")
    if right.button("Run the attack", type="primary", key="sim_run"):
        st.session_state.pop(CHECK_KEY, None)
        out_dir = loaded.folder / "simulated" / f"{index}-{attack}-{seed}"
        try:
            with st.spinner(f"Running {attack} with seed {seed}…"):
                st.session_state[SIMULATION_KEY] = run_simulation(
                    volume, name, attack, seed, out_dir
                )
        except AttackError as exc:
            st.error(f"{name}: {exc}", icon=":material/error:")
            st.session_state.pop(SIMULATION_KEY, None)
        except Exception as exc:  # a message on the page, never a stack trace
            st.error(
                f"{name}: the {attack} attack failed ({type(exc).__name__}: {exc})",
                icon=":material/error:",
            )
            st.session_state.pop(SIMULATION_KEY, None)
    simulation = st.session_state.get(SIMULATION_KEY)
    if isinstance(simulation, Simulation):
        show_simulation(simulation)


def show_simulation(simulation: Simulation) -> None:
    truth = simulation.truth
    notice()
    st.markdown(
        f"**{simulation.attack}** (label {truth.label}) on {simulation.name}, seed "
        f"{simulation.seed}: {int(truth.mask.sum())} voxels changed"
        + (
            f", centre at slice {truth.centre[0]}, row {truth.centre[1]}, col {truth.centre[2]}"
            if truth.centre
            else ""
        )
    )
    volume = simulation.original
    slices = volume.shape[0]
    index = simulation.centre_slice
    if slices > 1:
        index = st.slider(
            "Slice", 0, slices - 1, simulation.centre_slice, key=f"sim_slice_{id(simulation)}"
        )
    presets = window_presets(volume)
    window_name = st.radio(
        "Window", list(presets), horizontal=True, key=f"sim_window_{id(simulation)}"
    )
    window = presets[window_name]
    before, after, mask = st.columns(3)
    before.image(
        slice_png(volume.pixels[index], window),
        caption=f"Before (authentic), slice {index}",
        output_format="PNG",
    )
    after.image(
        slice_png(simulation.tampered.pixels[index], window),
        caption=f"After — SIMULATED {simulation.attack}, slice {index}",
        output_format="PNG",
    )
    mask.image(
        mask_png(simulation.tampered, truth.mask, index, window),
        caption=f"Ground-truth mask (red) — SIMULATED, slice {index}",
        output_format="PNG",
    )
    with st.expander("Ground truth (JSON)"):
        from medforensics.ui.simulate import ground_truth_json

        st.json(ground_truth_json(simulation), expanded=False)
    st.markdown("#### Downloads (SIMULATED)")
    download_buttons(simulation.downloads, key=f"sim-{id(simulation)}")
    if st.button("Analyse the simulated scan with the detector", key="sim_check"):
        from medforensics.scan import analyse_volume

        with st.spinner("Analysing the simulated scan…"):
            detector = state.detector()
            detection, result = analyse_volume(simulation.tampered, detector)
            result.input = f"{simulation.name} (SIMULATED {simulation.attack})"
            st.session_state[CHECK_KEY] = make_item(
                1, result, simulation.tampered, detection, detector
            )
    checked = st.session_state.get(CHECK_KEY)
    if checked is not None and checked.volume is simulation.tampered:
        verdict_banner(checked.result, simulated=True)
        assert checked.detection is not None
        maps = MapView.of(checked.detection, simulation.tampered.shape)
        view = View(index=int(index), window=window)
        st.image(
            render_png(simulation.tampered, maps, checked.result.findings, view),
            caption=f"SIMULATED scan with the detector's map, slice {index}",
            output_format="PNG",
        )
        findings_table(checked.result, key=f"sim-findings-{id(simulation)}")
