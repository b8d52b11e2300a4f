"""The CT-GAN dataset reader on a small stand-in with the published layout."""

from __future__ import annotations

from pathlib import Path

import pytest

from medforensics.evaluate.ctgan_format import (
    CtganFormatError,
    find_ctgan_scan,
    read_ctgan_dataset,
    read_ctgan_labels,
)

EXP1 = """type,uuid,slice,x,y
FM,1280,52,352,180
TB,1280,60,150,300
FB,2009,101,310,244
TM,3460,77,402,199
"""
EXP2 = "type,uuid,slice,x,y\nFM,7001,40,200,220\n"


def _make_dataset(root: Path) -> Path:
    """CT_Scans/EXP1_blind/<uuid>/ folders for experiment 1, <uuid>.mhd at the root for 2."""
    (root / "labels_exp1.csv").write_text(EXP1)
    (root / "labels_exp2.csv").write_text(EXP2)
    for uuid in ("1280", "2009", "3460"):
        scan = root / "CT_Scans" / "EXP1_blind" / uuid
        scan.mkdir(parents=True)
        (scan / "0.dcm").write_bytes(b"placeholder")
    (root / "7001.mhd").write_text("ObjectType = Image\n")
    return root


def test_reads_types_labels_and_locations(tmp_path: Path) -> None:
    dataset = read_ctgan_dataset(_make_dataset(tmp_path))
    assert [location.type for location in dataset.locations] == ["FM", "TB", "FB", "TM", "FM"]
    injected, benign, removed, cancer, exp2 = dataset.locations
    # FM = fake cancer injected, FB = real cancer removed: the two tampered kinds.
    assert injected.manipulated and injected.attack == "inject"
    assert removed.manipulated and removed.attack == "remove"
    # TB and TM are untouched locations (no cancer / real cancer).
    assert not benign.manipulated and benign.attack is None
    assert not cancer.manipulated and cancer.attack is None
    assert (injected.slice, injected.x, injected.y) == (52, 352, 180)
    truth = injected.ground_truth()
    assert (truth.slice, truth.row, truth.col) == (52, 180, 352)
    assert injected.scan_path == tmp_path / "CT_Scans" / "EXP1_blind" / "1280"
    assert exp2.experiment == 2 and exp2.scan_path == tmp_path / "7001.mhd"
    assert injected.source.endswith("labels_exp1.csv:2")
    # Scan 1280 has an injected and an untouched location: the scan is manipulated.
    assert dataset.scan_labels() == {
        (1, "1280"): True,
        (1, "2009"): True,
        (1, "3460"): False,
        (2, "7001"): True,
    }


def test_missing_scan_is_named(tmp_path: Path) -> None:
    root = _make_dataset(tmp_path)
    (root / "CT_Scans" / "EXP1_blind" / "2009" / "0.dcm").unlink()
    (root / "CT_Scans" / "EXP1_blind" / "2009").rmdir()
    with pytest.raises(CtganFormatError, match="exp1/2009"):
        read_ctgan_dataset(root)
    labels_only = read_ctgan_dataset(root, require_scans=False)
    assert labels_only.missing_scans == ((1, "2009"),)
    assert labels_only.locations[2].scan_path is None


def test_single_experiment_and_missing_labels_file(tmp_path: Path) -> None:
    root = _make_dataset(tmp_path)
    assert len(read_ctgan_dataset(root, experiments=[2]).locations) == 1
    (root / "labels_exp2.csv").unlink()
    with pytest.raises(CtganFormatError, match=r"labels_exp2\.csv"):
        read_ctgan_dataset(root)
    with pytest.raises(CtganFormatError, match="not a folder"):
        read_ctgan_dataset(root / "nowhere")


def test_header_is_forgiving_but_values_are_checked(tmp_path: Path) -> None:
    forgiving = tmp_path / "labels_exp1.csv"
    # Byte-order mark, upper case and spaces in the header, an extra column, a blank line.
    forgiving.write_text("\ufeffType, UUID ,Slice,X,Y,note\nfm,42,10.0,5,6,hi\n\n", "utf-8")
    (location,) = read_ctgan_labels(forgiving, experiment=1)
    assert (location.type, location.uuid, location.slice) == ("FM", "42", 10)

    bad_type = tmp_path / "bad_type.csv"
    bad_type.write_text("type,uuid,slice,x,y\nTB,1,2,3,4\nXX,1,2,3,4\n")
    with pytest.raises(CtganFormatError, match=r"bad_type.csv:3: type 'XX'"):
        read_ctgan_labels(bad_type, experiment=1)

    missing_column = tmp_path / "missing.csv"
    missing_column.write_text("type,uuid,slice,x\nTB,1,2,3\n")
    with pytest.raises(CtganFormatError, match="missing column\\(s\\) y"):
        read_ctgan_labels(missing_column, experiment=1)

    fractional = tmp_path / "fractional.csv"
    fractional.write_text("type,uuid,slice,x,y\nTB,1,2.5,3,4\n")
    with pytest.raises(CtganFormatError, match=r"slice '2\.5' is not a whole number"):
        read_ctgan_labels(fractional, experiment=1)


def test_find_scan_in_experiment_folders(tmp_path: Path) -> None:
    (tmp_path / "EXP2_open" / "abc").mkdir(parents=True)
    assert find_ctgan_scan(tmp_path, "abc", experiment=2) == tmp_path / "EXP2_open" / "abc"
    assert find_ctgan_scan(tmp_path, "abc", experiment=1) is None
    assert find_ctgan_scan(tmp_path, "abc") == tmp_path / "EXP2_open" / "abc"
