"""Lesion annotations: the three CSV layouts, matching them to volumes, and the dataset builder."""

from __future__ import annotations

import csv
import json
import random
import re
from pathlib import Path

import numpy as np
import pytest
import typer
from typer.testing import CliRunner

from medforensics.cli import make_dataset
from medforensics.io.loader import load_paths
from medforensics.io.types import ImageVolume
from medforensics.samples import chest_ct_phantom, write_ct_series
from medforensics.tamper.annotations import (
    AnnotationError,
    Lesion,
    lesions_in,
    match_slices,
    read_annotations,
)
from medforensics.tamper.dataset import build_dataset

SERIES = {"P-1": "1.2.826.0.1.3680043.8.498.101", "P-2": "1.2.826.0.1.3680043.8.498.102"}
N_SLICES = 8
#: the phantom nodule of P-1: slices 3-5, rows 40-48, cols 25-33 (half-open box below)
NODULE = (3, 6, 40, 49, 25, 34)
TCIA_HEADER = (
    'dicom_file,kernel,sop_instance_uid,"class(A=adenocarcinoma,B=small-cell,E=large-cell,'
    'G=squamous)",xmin,ymin,xmax,ymax'
)


def sop_uid(patient: str, z: int) -> str:
    return f"{SERIES[patient]}.{z + 1}"


@pytest.fixture
def authentic_dir(tmp_path: Path) -> Path:
    """Two phantom series; P-1 has a 9-pixel nodule in its right lung on slices 3 to 5."""
    root = tmp_path / "authentic"
    for k, patient in enumerate(SERIES):
        hu = chest_ct_phantom(N_SLICES, 96, np.random.default_rng(k))
        if patient == "P-1":
            z0, z1, y0, y1, x0, x1 = NODULE
            yy, xx = np.mgrid[y0:y1, x0:x1]
            ball = (yy - (y0 + y1 - 1) / 2) ** 2 + (xx - (x0 + x1 - 1) / 2) ** 2 <= 4.5**2
            hu[z0:z1, y0:y1, x0:x1][:, ball] = 40.0
        write_ct_series(
            hu,
            root / patient,
            spacing=(2.5, 1.8, 1.8),
            patient_id=patient,
            series_uid=SERIES[patient],
            sop_uids=[sop_uid(patient, z) for z in range(N_SLICES)],
        )
    return root


def _volumes(root: Path) -> list[ImageVolume]:
    return [v for v in load_paths([str(root)]) if isinstance(v, ImageVolume)]


def _write(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n")
    return path


def tcia_csv(path: Path) -> Path:
    """The layout of Lung-PET-CT-Dx ``tumor_bboxes.csv``: inclusive xmin..xmax, by SOP UID."""
    z0, z1, y0, y1, x0, x1 = NODULE
    rows = [
        f"P-1/IM{z + 1:05d}.dcm,STANDARD,{sop_uid('P-1', z)},A,{x0},{y0},{x1 - 1},{y1 - 1}"
        for z in range(z0, z1)
    ]
    return _write(path, [TCIA_HEADER, *rows])


def test_box_csv_layout(authentic_dir: Path, tmp_path: Path) -> None:
    lesions = read_annotations(tcia_csv(tmp_path / "boxes.csv"))
    assert len(lesions) == 3
    first = lesions[0]
    assert first.sop_instance_uid == sop_uid("P-1", 3)
    assert first.file == "P-1/IM00004.dcm"
    assert first.box == (40, 49, 25, 34)  # inclusive xmax/ymax become half-open
    assert first.label == "A"
    assert first.source == f"{tmp_path / 'boxes.csv'}:2"
    by_series = {v.series_uid: v for v in _volumes(authentic_dir)}
    assert lesions_in(by_series[SERIES["P-1"]], lesions) == [NODULE]  # 3 slices, one lesion
    assert lesions_in(by_series[SERIES["P-2"]], lesions) == []
    # without SOP UIDs the file path finds the slice
    by_file = [Lesion(file=lesion.file, box=lesion.box) for lesion in lesions]
    assert match_slices(by_series[SERIES["P-1"]], by_file) == [3, 4, 5]


def test_ctgan_layout_points_become_boxes(authentic_dir: Path, tmp_path: Path) -> None:
    path = _write(
        tmp_path / "labels_exp1.csv",
        ["type,uuid,slice,x,y", "TM,P-1,4,29,44", "TB,P-1,2,60,50", f"TM,{SERIES['P-2']},5,3,2"],
    )
    lesions = read_annotations(path, point_radius_px=5)
    assert [(lesion.series_uid, lesion.slice) for lesion in lesions] == [
        ("P-1", 4),
        (SERIES["P-2"], 5),
    ]  # the TB row is not a lesion
    assert lesions[0].box == (39, 50, 24, 35)
    assert lesions[1].box == (0, 8, 0, 9)  # clipped at the image edge
    assert lesions[0].source.endswith("labels_exp1.csv:2")
    by_series = {v.series_uid: v for v in _volumes(authentic_dir)}
    # uuid = the series folder; a 5 px radius at 1.8 mm is 9 mm: 3 slices of 2.5 mm each side
    assert lesions_in(by_series[SERIES["P-1"]], lesions) == [(1, 8, 39, 50, 24, 35)]
    assert lesions_in(by_series[SERIES["P-2"]], lesions) == [(2, 8, 0, 8, 0, 9)]


def test_generic_layout(authentic_dir: Path, tmp_path: Path) -> None:
    path = _write(
        tmp_path / "generic.csv",
        [
            "series_uid,slice,x0,y0,x1,y1,label",
            f"{SERIES['P-1']},3,25,40,34,49,nodule",
            f"{SERIES['P-1']},4,26,41,33,48,nodule",
            "1.2.3.999,4,26,41,33,48,elsewhere",
        ],
    )
    lesions = read_annotations(path)
    assert lesions[0] == Lesion(
        series_uid=SERIES["P-1"],
        slice=3,
        box=(40, 49, 25, 34),
        label="nodule",
        source=f"{path}:2",
    )
    volume = next(v for v in _volumes(authentic_dir) if v.series_uid == SERIES["P-1"])
    assert match_slices(volume, lesions) == [3, 4, None]
    assert lesions_in(volume, lesions) == [(3, 5, 40, 49, 25, 34)]


def test_boxes_merge_only_across_adjacent_overlapping_slices() -> None:
    volume = ImageVolume(
        "mem", "nifti", "CT", np.zeros((10, 64, 64), np.float32), series_uid="1.2.3"
    )

    def on(z: int, box: tuple[int, int, int, int]) -> Lesion:
        return Lesion(series_uid="1.2.3", slice=z, box=box)

    lesions = [
        on(2, (10, 20, 10, 20)),
        on(3, (15, 25, 12, 22)),  # overlaps slice 2's box: same lesion
        on(5, (10, 20, 10, 20)),  # a slice gap: another lesion
        on(3, (40, 50, 40, 50)),  # adjacent slice, no overlap: another lesion
        on(4, (60, 70, 60, 70)),  # clipped to the 64-pixel image
        on(12, (10, 20, 10, 20)),  # beyond the last slice: not in this volume
    ]
    expected = [
        (2, 4, 10, 25, 10, 22),
        (3, 4, 40, 50, 40, 50),
        (4, 5, 60, 64, 60, 64),
        (5, 6, 10, 20, 10, 20),
    ]
    assert lesions_in(volume, lesions) == expected
    assert lesions_in(volume, lesions[::-1]) == expected  # order of the rows does not matter


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        (["sop_instance_uid,xmin,ymin,xmax", "1.2.3,1,2,3"], ":1: missing column(s) ymax"),
        (
            [TCIA_HEADER, "a.dcm,L,1.2.3,A,301,329,351,372", "b.dcm,L,1.2.4,A,30x,329,351,372"],
            ":3: xmin '30x' is not a number",
        ),
        (["series_uid,slice,x0,y0,x1,y1", "1.2.3,two,1,1,5,5"], ":2: slice 'two' is not a number"),
        (["series_uid,x0,y0,x1,y1", "1.2.3,1,1,5,5"], ":2: no sop_instance_uid, series_uid"),
        (["sop_instance_uid,x0,y0,x1,y1", "1.2.3,5,1,5,5"], ":2: the box x0,y0,x1,y1 = 5,1,5,5"),
        (["type,uuid,slice,x,y", "TM,scan,4,1.5,2"], ":2: x '1.5' is not a whole number"),
        (["type,uuid,x,y", "TM,scan,1,2"], "missing column(s) slice"),
        (["patient,finding", "a,b"], ":1: the header fits no annotation layout"),
        ([], "the file is empty"),
    ],
)
def test_errors_name_file_and_line(tmp_path: Path, lines: list[str], message: str) -> None:
    path = _write(tmp_path / "bad.csv", lines) if lines else tmp_path / "bad.csv"
    if not lines:
        path.write_text("")
    with pytest.raises(AnnotationError) as error:
        read_annotations(path)
    assert str(error.value).startswith(str(path))
    assert message in str(error.value)


def _mask(case_dir: Path) -> np.ndarray:
    packed = np.load(case_dir / "mask.npz")
    shape = tuple(int(v) for v in packed["shape"])
    return np.unpackbits(packed["mask"])[: int(np.prod(shape))].reshape(shape).astype(bool)


def test_dataset_with_annotations(authentic_dir: Path, tmp_path: Path) -> None:
    lesions = read_annotations(tcia_csv(tmp_path / "boxes.csv"))
    volumes = _volumes(authentic_dir)
    out = tmp_path / "ds"
    rows = build_dataset(volumes, out, seed=2, cases_per_series=3, annotations=lesions)
    labels = [row["label"] for row in rows]
    assert labels.count("TM") == 1  # once per lesion, not once per case
    z0, z1, y0, y1, x0, x1 = NODULE

    (real,) = [row for row in rows if row["label"] == "TM"]
    assert (real["slice"], real["y"], real["x"]) == (4, 44, 29)
    assert real["uid"] == sop_uid("P-1", 4)
    assert real["path"] == str(authentic_dir / "P-1" / "IM00005.dcm")  # the untouched file
    assert real["attack"] == "" and real["series_uid"] == SERIES["P-1"]

    removed = [row for row in rows if row["label"] == "FB" and row["patient_id"] == "P-1"]
    assert removed  # seed 2 draws remove for P-1 at least once
    for row in removed:
        case_dir = out / "cases" / row["case_id"]
        truth = json.loads((case_dir / "truth.json").read_text())
        assert truth["params"]["box"] == list(NODULE)
        assert truth["params"]["source"] == "annotation"
        assert _mask(case_dir)[z0:z1, y0:y1, x0:x1].all()  # the whole real lesion is erased
        assert z0 <= row["slice"] < z1 and y0 <= row["y"] < y1 and x0 <= row["x"] < x1
    assert any(row["label"] == "TB" and row["patient_id"] == "P-1" for row in rows)
    for row in rows:
        if row["label"] == "TB" and row["patient_id"] == "P-1":
            inside = z0 <= row["slice"] < z1 and y0 - 8 <= row["y"] < y1 + 8
            assert not (inside and x0 - 8 <= row["x"] < x1 + 8)  # clear of the real lesion
    # P-2 has no annotated lesion: its removals stay sampled
    for row in rows:
        if row["label"] == "FB" and row["patient_id"] == "P-2":
            truth = json.loads((out / "cases" / row["case_id"] / "truth.json").read_text())
            assert truth["params"]["source"] == "sampled"


def test_dataset_with_annotations_is_reproducible(authentic_dir: Path, tmp_path: Path) -> None:
    lesions = read_annotations(tcia_csv(tmp_path / "boxes.csv"))
    volumes = _volumes(authentic_dir)
    shuffled = list(lesions)
    random.Random(0).shuffle(shuffled)
    kwargs = {"seed": 7, "cases_per_series": 2, "attacks": ("remove", "inject")}
    first = build_dataset(volumes, tmp_path / "a", annotations=lesions, write=False, **kwargs)
    second = build_dataset(
        volumes[::-1], tmp_path / "b", annotations=shuffled, write=False, **kwargs
    )
    assert first == second
    assert (tmp_path / "a" / "manifest.csv").read_bytes() == (
        tmp_path / "b" / "manifest.csv"
    ).read_bytes()
    # annotations that match no volume leave the dataset exactly as without any
    elsewhere = [Lesion(sop_instance_uid="1.2.3.4", box=(1, 5, 1, 5))]
    plain = build_dataset(volumes, tmp_path / "c", write=False, **kwargs)
    unmatched = build_dataset(volumes, tmp_path / "d", annotations=elsewhere, write=False, **kwargs)
    assert plain == unmatched


def test_benign_rows_avoid_real_lesions(authentic_dir: Path, tmp_path: Path) -> None:
    # a "lesion" over the whole left half of P-1: every TB row of P-1 must be in the right half
    path = _write(
        tmp_path / "half.csv",
        ["series_uid,slice,x0,y0,x1,y1"]
        + [f"{SERIES['P-1']},{z},0,0,48,96" for z in range(N_SLICES)],
    )
    (volume,) = [v for v in _volumes(authentic_dir) if v.series_uid == SERIES["P-1"]]
    kwargs = {"seed": 0, "cases_per_series": 6, "attacks": ("inject",), "write": False}
    plain = build_dataset([volume], tmp_path / "a", **kwargs)
    rows = build_dataset([volume], tmp_path / "b", annotations=read_annotations(path), **kwargs)
    assert any(row["label"] == "TB" and row["x"] < 56 for row in plain)  # the test can fail
    benign = [row for row in rows if row["label"] == "TB"]
    assert benign and all(row["x"] >= 48 + 8 for row in benign)


def _app() -> typer.Typer:
    app = typer.Typer()

    @app.callback()
    def _root() -> None:
        """Test app."""

    make_dataset.register(app)
    return app


def test_make_dataset_command_with_annotations(authentic_dir: Path, tmp_path: Path) -> None:
    boxes = tcia_csv(tmp_path / "boxes.csv")
    other = _write(
        tmp_path / "other.csv",
        ["sop_instance_uid,x0,y0,x1,y1", "1.2.826.0.1.3680043.8.498.999.1,1,1,5,5"],
    )
    out = tmp_path / "ds"
    args = ["make-dataset", str(authentic_dir), str(out), "--cases-per-series", "1"]
    args += ["--attack", "remove", "--annotations", str(boxes), "--annotations", str(other)]
    result = CliRunner().invoke(_app(), args)
    assert result.exit_code == 0, result.output
    assert "annotations: 3 of 4 matched 1 lesion(s) in 1 series" in result.output
    assert f"{other}:2" in result.output and "matched no volume" in result.output
    assert "2 series, 2 cases" in result.output
    with (out / "manifest.csv").open() as handle:
        labels = [row["label"] for row in csv.DictReader(handle)]
    assert labels.count("TM") == 1 and labels.count("FB") == 2


def test_make_dataset_command_rejects_a_bad_annotations_file(
    authentic_dir: Path, tmp_path: Path
) -> None:
    bad = _write(tmp_path / "bad.csv", [TCIA_HEADER, "a.dcm,L,1.2.3,A,1,2,x,4"])
    args = ["make-dataset", str(authentic_dir), str(tmp_path / "ds"), "--annotations", str(bad)]
    result = CliRunner().invoke(_app(), args)
    assert result.exit_code != 0
    flat = re.sub(r"[\s│╭╮╰╯─]+", "", result.output)  # rich wraps long paths in a box
    assert "bad.csv:2" in flat and "xmax'x'isnotanumber" in flat
