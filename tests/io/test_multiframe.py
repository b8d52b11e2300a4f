"""Multi-frame DICOM: an enhanced CT with frames stored out of order, and pydicom's files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import EnhancedCTImageStorage, ExplicitVRLittleEndian, generate_uid

from medforensics.io import ImageVolume, LoadError, load_paths
from medforensics.scan import scan_paths
from tests.conftest import phantom_hu

SPACING = (1.25, 0.7, 0.9)
ORIGIN = np.array([-20.0, -30.0, 100.0])
SLOPE = 0.5


def _item(**values: object) -> Dataset:
    item = Dataset()
    for keyword, value in values.items():
        setattr(item, keyword, value)
    return item


def write_enhanced_ct(
    path: Path,
    hu_volume: np.ndarray,
    stored_order: list[int],
    intercepts: list[float] | None = None,
    per_frame_items: int | None = None,
) -> Dataset:
    """Write ``hu_volume`` as an Enhanced CT file whose frame k holds slice ``stored_order[k]``.

    Args:
        intercepts: per-frame RescaleIntercept (in stored order); None puts one shared rescale.
        per_frame_items: write only this many per-frame functional group items (damaged file).
    """
    n, rows, cols = hu_volume.shape
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = EnhancedCTImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = EnhancedCTImageStorage
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.Modality = "CT"
    ds.PatientID = "PHANTOM-MF"
    ds.NumberOfFrames = n
    ds.Rows, ds.Columns = rows, cols
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 1

    shared = _item(
        PlaneOrientationSequence=Sequence([_item(ImageOrientationPatient=[1, 0, 0, 0, 1, 0])]),
        PixelMeasuresSequence=Sequence(
            [_item(PixelSpacing=list(SPACING[1:]), SliceThickness=SPACING[0])]
        ),
    )
    if intercepts is None:
        shared.PixelValueTransformationSequence = Sequence(
            [_item(RescaleSlope=SLOPE, RescaleIntercept=-1024.0, RescaleType="HU")]
        )
    ds.SharedFunctionalGroupsSequence = Sequence([shared])

    per_frame = []
    stored = np.empty((n, rows, cols), dtype=np.int16)
    for k, z in enumerate(stored_order):
        intercept = intercepts[k] if intercepts is not None else -1024.0
        stored[k] = np.rint((hu_volume[z] - intercept) / SLOPE).astype(np.int16)
        position = ORIGIN + np.array([0.0, 0.0, z * SPACING[0]])
        item = _item(
            PlanePositionSequence=Sequence([_item(ImagePositionPatient=position.tolist())]),
            FrameContentSequence=Sequence([_item(InStackPositionNumber=z + 1)]),
        )
        if intercepts is not None:
            item.PixelValueTransformationSequence = Sequence(
                [_item(RescaleSlope=SLOPE, RescaleIntercept=intercept, RescaleType="HU")]
            )
        per_frame.append(item)
    ds.PerFrameFunctionalGroupsSequence = Sequence(per_frame[:per_frame_items])
    ds.PixelData = stored.tobytes()
    ds.save_as(path, enforce_file_format=True)
    return ds


def _read_one(path: Path) -> ImageVolume:
    items = list(load_paths([path]))
    assert len(items) == 1, items
    assert isinstance(items[0], ImageVolume), items[0]
    return items[0]


@pytest.fixture
def hu_volume() -> np.ndarray:
    # hu values of a 16-bit signed store at slope 0.5 must stay inside ±16384 HU: the phantom does
    return phantom_hu(n_slices=6, seed=31)


def test_enhanced_ct_frames_are_sorted_by_position(tmp_path: Path, hu_volume: np.ndarray) -> None:
    stored_order = [3, 0, 5, 1, 4, 2]
    path = tmp_path / "enhanced.dcm"
    ds = write_enhanced_ct(path, hu_volume, stored_order)

    volume = _read_one(path)

    assert volume.kind == "dicom-multiframe"
    assert volume.modality == "CT"
    assert volume.shape == hu_volume.shape
    # slope 0.5: stored values are half-HU steps
    np.testing.assert_allclose(volume.pixels, hu_volume, atol=0.25 + 1e-3)
    np.testing.assert_allclose(volume.spacing, SPACING, rtol=1e-6)
    assert volume.positions is not None
    np.testing.assert_allclose(np.diff(volume.positions[:, 2]), SPACING[0])
    # slice i came from the frame that stored slice i
    assert [ref.frame for ref in volume.slices] == [stored_order.index(z) for z in range(6)]
    assert {ref.sop_instance_uid for ref in volume.slices} == {ds.SOPInstanceUID}
    assert volume.source_files == [path]
    assert volume.problems == []


def test_per_frame_rescale_is_applied_to_the_right_frame(
    tmp_path: Path, hu_volume: np.ndarray
) -> None:
    stored_order = [5, 4, 3, 2, 1, 0]
    intercepts = [-1024.0, -1000.0, -900.0, -1024.0, -800.0, -1010.0]
    path = tmp_path / "per-frame-rescale.dcm"
    write_enhanced_ct(path, hu_volume, stored_order, intercepts=intercepts)

    volume = _read_one(path)

    np.testing.assert_allclose(volume.pixels, hu_volume, atol=0.25 + 1e-3)
    assert [ref.frame for ref in volume.slices] == [5, 4, 3, 2, 1, 0]


def test_scan_reports_findings_on_the_sorted_slice(
    tmp_path: Path, hu_volume: np.ndarray, constant_detector: object
) -> None:
    stored_order = [2, 5, 0, 3, 1, 4]
    path = tmp_path / "enhanced.dcm"
    write_enhanced_ct(path, hu_volume, stored_order)
    name = constant_detector("manipulated")  # type: ignore[operator]

    (result,) = scan_paths([str(path)], detector=name)

    assert result.error is None
    assert result.kind == "dicom-multiframe"
    finding = result.findings[0]
    assert finding.slice == 5  # the test detector's finding sits on the last sorted slice
    assert finding.frame == stored_order.index(5)


def test_damaged_per_frame_groups_are_read_or_rejected_cleanly(
    tmp_path: Path, hu_volume: np.ndarray
) -> None:
    path = tmp_path / "short-per-frame.dcm"
    write_enhanced_ct(path, hu_volume, list(range(6)), intercepts=[-1024.0] * 6, per_frame_items=3)

    items = list(load_paths([path]))

    assert len(items) == 1
    item = items[0]
    if isinstance(item, LoadError):
        assert str(path) in str(item)
    else:
        assert isinstance(item, ImageVolume)
        assert item.shape == hu_volume.shape
        assert item.problems  # the missing positions are worth a word


@pytest.mark.parametrize(
    ("name", "n_frames"),
    [
        ("rtdose.dcm", 15),
        ("rtdose_rle.dcm", 15),
        ("rtdose_expb.dcm", 15),
        ("SC_rgb_rle_2frame.dcm", 2),
        ("SC_rgb_rle_16bit_2frame.dcm", 2),
        ("examples_ybr_color.dcm", 30),
    ],
)
def test_pydicom_multiframe_files_read(name: str, n_frames: int) -> None:
    path = Path(get_testdata_file(name))  # type: ignore[arg-type]
    reference = pydicom.dcmread(path)

    volume = _read_one(path)

    assert volume.kind == "dicom-multiframe"
    assert volume.shape == (n_frames, reference.Rows, reference.Columns)
    assert sorted(ref.frame for ref in volume.slices) == list(range(n_frames))
    assert np.isfinite(volume.pixels).all()


def test_frames_of_two_echoes_in_one_file_are_two_volumes(tmp_path: Path) -> None:
    # an enhanced MR with two echoes of every slice: frames of one echo form a volume, and a
    # slice index is a place again (stacked together, echoes would be neighbouring "slices")
    echoes = [phantom_hu(n_slices=6, seed=41), phantom_hu(n_slices=6, seed=42)]
    path = tmp_path / "two-echoes.dcm"
    stored_order = [4, 10, 0, 7, 2, 11, 5, 1, 9, 3, 8, 6]  # echo 2 is slices 6..11
    ds = write_enhanced_ct(path, np.concatenate(echoes), stored_order)
    for k, z in enumerate(stored_order):
        item = ds.PerFrameFunctionalGroupsSequence[k]
        position = ORIGIN + np.array([0.0, 0.0, (z % 6) * SPACING[0]])
        item.PlanePositionSequence[0].ImagePositionPatient = position.tolist()
        item.MREchoSequence = Sequence([_item(EffectiveEchoTime=90.0 if z >= 6 else 12.0)])
    ds.save_as(path, enforce_file_format=True)

    volumes = list(load_paths([path]))

    assert all(isinstance(v, ImageVolume) for v in volumes), volumes
    assert [v.shape for v in volumes] == [echoes[0].shape] * 2
    labels = ("echo time 12.0 ms", "echo time 90.0 ms")
    for volume, echo, label in zip(volumes, echoes, labels, strict=True):
        assert isinstance(volume, ImageVolume)
        np.testing.assert_allclose(volume.pixels, echo, atol=0.25 + 1e-3)
        assert volume.positions is not None
        np.testing.assert_allclose(np.diff(volume.positions[:, 2]), SPACING[0])
        assert volume.attributes["SeriesPart"].endswith(label)
        assert not [p for p in volume.problems if "share a position" in p]
    # each part gets its own reports, though both come from one file
    from medforensics.report.build import report_stem

    assert report_stem(volumes[0]) != report_stem(volumes[1])
    # each slice still names its frame of the one file
    assert sorted(ref.frame for v in volumes for ref in v.slices) == list(range(12))
    assert [ref.frame for ref in volumes[1].slices] == [stored_order.index(z) for z in range(6, 12)]


def test_frames_sharing_positions_with_nothing_to_tell_them_apart_stay_together(
    tmp_path: Path,
) -> None:
    path = tmp_path / "shared-positions.dcm"
    stored_order = list(range(12))
    ds = write_enhanced_ct(path, phantom_hu(n_slices=12, seed=43), stored_order)
    for k in range(12):
        item = ds.PerFrameFunctionalGroupsSequence[k]
        item.PlanePositionSequence[0].ImagePositionPatient = (
            ORIGIN + np.array([0.0, 0.0, (k % 6) * SPACING[0]])
        ).tolist()
    ds.save_as(path, enforce_file_format=True)

    volume = _read_one(path)

    assert volume.shape[0] == 12 and "SeriesPart" not in volume.attributes
    assert any("share a position" in p for p in volume.problems)
