"""Train and judge ``mr-local`` and ``xr-local``, holding out the MR and CR of ../shared/data.

    python benchmarks/dev_local2d.py --modality MR --out /tmp/mr-local.pt [--ship PATH]
    python benchmarks/dev_local2d.py --modality XR --out /tmp/xr-local.pt [--ship PATH]

Training uses only images that are NOT the issue's evaluation set (see ``mr_training`` and
``xr_training``: MR files bundled with DICOM/NIfTI libraries on this machine; for radiographs the
RT portal image bundled with pynetdicom, projections of the shared CT series, and single CT slices
treated as projection images). The held-out set is ../shared/data's Colin27 T1 (MR) and the chest
CR ``RG1_UNCR.dcm`` with its lossy JPEG 2000 copy ``RG1_J2KI.dcm`` (radiographs). Neither the
weights, nor the calibration, nor the operating point see them.

The held-out cases are the authentic images (MR: 5-slice chunks of Colin27; radiographs: the two
CR files and crops of them, which multiply the authentic samples but all come from one patient)
and simulator twins with fresh seeds. Prints AUC per attack family, FPR/TPR at the shipped
operating point and the top-3 localisation hit rate; ``--ship`` writes the checkpoint with these
figures in its model card.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

import numpy as np
import torch

from medforensics.detect.checkpoint import load_checkpoint, save_checkpoint
from medforensics.detect.local import LOCAL_DETECTORS, analyse
from medforensics.evaluate import compute_metrics
from medforensics.io.loader import load_paths
from medforensics.io.types import ImageVolume
from medforensics.train.cases import make_cases, patient_key
from medforensics.train.local import LocalTrainConfig
from medforensics.train.pipeline import (
    DEFAULT_ATTACKS,
    FAMILIES,
    score_cases,
    summarise,
    train_local_model,
)

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
SITE = Path(torch.__file__).resolve().parents[1]  # the venv's site-packages


def _load(paths: list[Path]) -> list[ImageVolume]:
    volumes = []
    for item in load_paths([str(p) for p in paths if p.exists()]):
        if isinstance(item, ImageVolume):
            volumes.append(item)
    return volumes


def mr_training() -> tuple[list[ImageVolume], str]:
    """Real MR bundled with dicom3tools, nibabel and pydicom (at least 128 pixels a side)."""
    from pydicom.data import get_testdata_file

    paths = [
        Path("/usr/share/doc/dicom3tools/examples/0051.dcm"),
        SITE / "nibabel/tests/data/0.dcm",
        SITE / "nibabel/tests/data/1.dcm",
        SITE / "nibabel/nicom/tests/data/csa_slice_norm.dcm",
        SITE / "nibabel/nicom/tests/data/slicethickness_empty_string.dcm",
        Path(str(get_testdata_file("examples_overlay.dcm"))),
    ]
    volumes = [v for v in _load(paths) if v.modality == "MR" and min(v.shape[1:]) >= 128]
    note = (
        "Real MR slices bundled with software on this machine (not the evaluation data): "
        "dicom3tools example 0051.dcm (BSD-style dicom3tools licence), nibabel test data 0.dcm, "
        "1.dcm, csa_slice_norm.dcm, slicethickness_empty_string.dcm (MIT), pydicom "
        "examples_overlay.dcm (MIT): "
        f"{len(volumes)} images of {len({patient_key(v) for v in volumes})} patients."
    )
    return volumes, note


def xr_training(rng: np.random.Generator) -> tuple[list[ImageVolume], dict[str, str], str]:
    """Projection images: the RT portal image, CT projections, CT slices as textures, phantoms."""
    from medforensics.samples.phantom import radiograph_phantom

    volumes: list[ImageVolume] = []
    patients: dict[str, str] = {}
    rt = SITE / "pynetdicom/tests/dicom_files/RTImageStorage.dcm"
    for v in _load([rt]):
        v = dataclasses.replace(v, modality="DX")
        volumes.append(v)
        patients[v.input] = "rtimage"
    ct_series = []
    for name in ("lung_pet_ct_dx_A0001_philips", "cptac_lscc_C3N-00247_siemens"):
        ct_series += [v for v in _load([DATA / name]) if v.modality == "CT" and v.shape[0] >= 20]
    try:
        from medforensics.samples.projection import ct_projection
    except ImportError:  # written by another change; without it, no projections
        ct_projection = None
    if ct_projection is not None:
        for v in ct_series:
            for axis in (1, 2):  # frontal and lateral
                p = ct_projection(v, rng, axis=axis)
                p = dataclasses.replace(p, input=f"{v.input}#projection{axis}")
                volumes.append(p)
                patients[p.input] = patient_key(v)
    # single CT slices of other patients, as projection-like textures (GE, 7 patients)
    for v in _load([DATA / "covid19_ny_sbu_ct_slices"]):
        if v.modality == "CT" and v.shape[0] == 1:
            pixels = v.pixels - float(v.pixels.min())
            volumes.append(dataclasses.replace(v, modality="DX", pixels=pixels))
            patients[v.input] = patient_key(v)
    for seed in range(6):
        pixels = radiograph_phantom(size=768, rng=np.random.default_rng(seed))
        ph = ImageVolume(
            input=f"phantom-{seed}", kind="image", modality="DX", pixels=pixels, bits_stored=12
        )
        volumes.append(ph)
        patients[ph.input] = f"phantom-{seed}"
    note = (
        "Projection images that are not the evaluation data: the RT portal image bundled with "
        "pynetdicom (MIT); frontal and lateral projections (Beer-Lambert, quantum noise) of the "
        "TCIA CT series Lung-PET-CT-Dx A0001 (CC BY 4.0) and CPTAC-LSCC C3N-00247 (CC BY 3.0); "
        "single COVID-19-NY-SBU CT slices (CC BY 4.0) used as projection-like textures; "
        f"synthetic radiograph phantoms. {len(volumes)} images of "
        f"{len(set(patients.values()))} patients."
    )
    return volumes, patients, note


def mr_held_out() -> list[ImageVolume]:
    return _load([DATA / "brain_mri_t1_colin27_mricron_data" / "ch2.nii.gz"])


def xr_held_out() -> list[ImageVolume]:
    files = [DATA / "pydicom_data_samples" / n for n in ("RG1_UNCR.dcm", "RG1_J2KI.dcm")]
    whole = [v for v in _load(files) if v.modality == "CR"]
    crops = []
    for v in whole:  # four 1024² crops of each: more authentic samples, same patient
        rows, cols = v.shape[1:]
        for i, (r, c) in enumerate(
            ((0, 0), (0, cols - 1024), (rows - 1024, 0), (rows - 1024, cols - 1024))
        ):
            crops.append(
                dataclasses.replace(
                    v,
                    input=f"{v.input}#crop{i}",
                    pixels=np.ascontiguousarray(v.pixels[:, r : r + 1024, c : c + 1024]),
                    slices=v.slices,
                )
            )
    return whole + crops


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--modality", choices=("MR", "XR"), required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--twins", type=int, default=5, help="held-out twins per authentic case")
    parser.add_argument("--eval-only", action="store_true")
    parser.add_argument("--ship", type=Path, help="write the checkpoint here with held-out figures")
    args = parser.parse_args()
    torch.set_num_threads(2)
    rng = np.random.default_rng(args.seed)
    family = FAMILIES[args.modality]
    if args.modality == "MR":
        train, note = mr_training()
        patients: dict[str, str] | None = None
        test = mr_held_out()
    else:
        train, patients, note = xr_training(rng)
        test = xr_held_out()
    print(note)
    print(f"held out: {[v.input for v in test]}")
    started = time.time()
    if not args.eval_only:
        config = LocalTrainConfig(rounds=args.rounds, steps_per_round=args.steps, seed=args.seed)
        result = train_local_model(
            train,
            args.out,
            config,
            modality=args.modality,
            patients=patients,
            data_description=note,
            progress=print,
        )
        print("validation:", json.dumps(result.meta["validation"], indent=1))
        print(f"trained in {time.time() - started:.0f} s")
    detector = LOCAL_DETECTORS[args.modality](checkpoint=args.out)
    cases = list(
        make_cases(test, DEFAULT_ATTACKS, seed=777, chunk=family.chunk, per_chunk=args.twins)
    )
    scored = score_cases(lambda volume: analyse(detector.net, detector.filters, volume), cases)
    probs = detector.calibration(np.array([s.statistic for s in scored]))
    report = summarise(scored, probs, detector.operating_point.manipulated_at)
    labels = np.array([s.label for s in scored])
    raw = np.array([s.statistic for s in scored])
    report["auc_raw_statistic"] = round(float(compute_metrics(labels, raw).roc_auc), 4)
    print("held out:", json.dumps(report, indent=1))
    if args.ship:
        state, meta = load_checkpoint(args.out)
        meta["card"]["held_out"] = {
            "data": [v.input.replace(str(DATA), "../shared/data") for v in test],
            "cases": f"authentic {family.chunk}-slice cases and {args.twins} simulator twins each "
            "(seed 777); FPR/TPR at the shipped operating point, fitted on training-side "
            "validation only",
            "command": f"python benchmarks/dev_local2d.py --modality {args.modality} "
            f"--rounds {args.rounds} --steps {args.steps} --seed {args.seed} "
            f"--out {args.out} --ship {args.ship}",
            **report,
        }
        save_checkpoint(args.ship, state, meta)
        print(f"shipped to {args.ship}")


if __name__ == "__main__":
    main()
