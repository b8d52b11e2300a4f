"""Single-frame DICOM series: order along the slice normal, spacing, HU, UIDs, gaps, duplicates."""

from __future__ import annotations

import dataclasses
import math
import shutil
from pathlib import Path

import numpy as np
import pydicom
import pytest

from medforensics.io import ImageVolume, LoadError, load_paths
from medforensics.scan import scan_paths
from tests.conftest import HU_TOLERANCE, WrittenSeries, rewrite_geometry, write_series


def _volumes(items: list[object]) -> list[ImageVolume]:
    errors = [item for item in items if isinstance(item, LoadError)]
    assert not errors, errors
    return [item for item in items if isinstance(item, ImageVolume)]


def _only_volume(path: Path | str) -> ImageVolume:
    volumes = _volumes(list(load_paths([path])))
    assert len(volumes) == 1, volumes
    return volumes[0]


def test_round_trip_reads_back_order_spacing_hu_and_uids(ct_series: WrittenSeries) -> None:
    # the fixture's file names are a permutation of slice order: sorting by name would fail
    names = [p.name for p in ct_series.paths]
    assert names != sorted(names)

    volume = _only_volume(ct_series.folder)

    assert volume.input == str(ct_series.folder)
    assert volume.kind == "dicom-series"
    assert volume.modality == "CT"
    assert volume.shape == ct_series.hu_volume.shape
    assert volume.pixels.dtype == np.float32
    np.testing.assert_allclose(volume.pixels, ct_series.hu_volume, atol=HU_TOLERANCE)
    np.testing.assert_allclose(volume.spacing, ct_series.spacing, rtol=1e-6)
    assert volume.positions is not None
    np.testing.assert_allclose(volume.positions, ct_series.positions, atol=1e-4)
    assert [ref.sop_instance_uid for ref in volume.slices] == ct_series.sop_uids
    assert [ref.source_file for ref in volume.slices] == ct_series.paths
    assert volume.series_uid == ct_series.series_uid
    assert volume.row_direction == (1.0, 0.0, 0.0)
    assert volume.col_direction == (0.0, 1.0, 0.0)
    assert volume.problems == []


def test_round_trip_of_a_single_file_is_one_slice(ct_series: WrittenSeries) -> None:
    volume = _only_volume(ct_series.paths[3])
    assert volume.input == str(ct_series.paths[3])
    assert volume.shape == (1, *ct_series.hu_volume.shape[1:])
    np.testing.assert_allclose(volume.pixels[0], ct_series.hu_volume[3], atol=HU_TOLERANCE)
    assert volume.slices[0].sop_instance_uid == ct_series.sop_uids[3]


def test_two_interleaved_series_in_one_folder_give_two_volumes(tmp_path: Path) -> None:
    first = write_series(tmp_path / "a", n_slices=6, seed=11)
    second = write_series(
        tmp_path / "b", n_slices=5, seed=12, spacing=(3.0, 0.8, 0.6), origin=(-30, -20, 40)
    )
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    # one folder, names that interleave the two series and say nothing about either
    rng = np.random.default_rng(0)
    sources = first.paths + second.paths
    for index, number in enumerate(rng.permutation(len(sources))):
        suffix = ".dcm" if index % 2 else ""
        shutil.move(sources[index], mixed / f"img{number:03d}{suffix}")

    volumes = _volumes(list(load_paths([mixed])))

    assert len(volumes) == 2
    by_series = {v.series_uid: v for v in volumes}
    assert set(by_series) == {first.series_uid, second.series_uid}
    for written in (first, second):
        volume = by_series[written.series_uid]
        assert volume.input == str(mixed)
        assert volume.shape == written.hu_volume.shape
        np.testing.assert_allclose(volume.pixels, written.hu_volume, atol=HU_TOLERANCE)
        assert [ref.sop_instance_uid for ref in volume.slices] == written.sop_uids
        assert volume.spacing[0] == pytest.approx(written.spacing[0])

    results = list(scan_paths([mixed]))
    assert len(results) == 2
    assert all(r.error is None and r.verdict is not None for r in results)


def test_missing_slice_is_reported_as_a_gap(ct_series: WrittenSeries) -> None:
    ct_series.paths[4].unlink()

    volume = _only_volume(ct_series.folder)

    assert volume.shape[0] == len(ct_series.paths) - 1
    gaps = [p for p in volume.problems if "gap" in p]
    assert len(gaps) == 1, volume.problems
    assert "slices 3 and 4" in gaps[0]
    # the gap does not distort the typical spacing
    assert volume.spacing[0] == pytest.approx(ct_series.spacing[0])
    expected = np.delete(ct_series.hu_volume, 4, axis=0)
    np.testing.assert_allclose(volume.pixels, expected, atol=HU_TOLERANCE)


def test_duplicate_copy_is_reported_and_ignored(ct_series: WrittenSeries) -> None:
    copy = ct_series.folder / "zz-copy-of-slice-2.dcm"
    shutil.copy(ct_series.paths[2], copy)

    volume = _only_volume(ct_series.folder)

    assert volume.shape == ct_series.hu_volume.shape
    assert copy not in volume.source_files
    assert [ref.sop_instance_uid for ref in volume.slices] == ct_series.sop_uids
    duplicates = [p for p in volume.problems if ct_series.sop_uids[2] in p]
    assert len(duplicates) == 1, volume.problems
    assert copy.name in duplicates[0] and "ignored" in duplicates[0]
    # a duplicate is not a gap and not a shared position
    assert not [p for p in volume.problems if "gap" in p or "share" in p]


def test_same_image_under_a_new_uid_is_reported_and_ignored(ct_series: WrittenSeries) -> None:
    # one image stored twice (re-sent after a re-encoding, say): a new instance UID, the same
    # position and pixels; copy-move would otherwise read the pair as one slice copied onto another
    from pydicom.uid import generate_uid

    copy = ct_series.folder / "zz-resent-slice-2.dcm"
    ds = pydicom.dcmread(ct_series.paths[2])
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.save_as(copy)

    volume = _only_volume(ct_series.folder)

    assert volume.shape == ct_series.hu_volume.shape
    assert copy not in volume.source_files
    assert [ref.sop_instance_uid for ref in volume.slices] == ct_series.sop_uids
    np.testing.assert_allclose(volume.pixels, ct_series.hu_volume, atol=HU_TOLERANCE)
    resent = [p for p in volume.problems if copy.name in p]
    assert len(resent) == 1 and "same image" in resent[0] and "ignored" in resent[0]
    assert not [p for p in volume.problems if "share" in p]


def test_two_images_at_one_position_both_stay(ct_series: WrittenSeries) -> None:
    # echoes or phases share a position but differ in their pixels: nothing is dropped
    from pydicom.uid import generate_uid

    other = ct_series.folder / "zz-second-phase-slice-2.dcm"
    ds = pydicom.dcmread(ct_series.paths[2])
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    pixels = ds.pixel_array.copy()
    pixels[10:20, 10:20] += 7
    ds.PixelData = pixels.tobytes()
    ds.save_as(other)

    volume = _only_volume(ct_series.folder)

    assert volume.shape[0] == ct_series.hu_volume.shape[0] + 1
    assert other in volume.source_files
    assert [p for p in volume.problems if "share the position" in p]


def _assert_sorted_along_normal(
    written: WrittenSeries, volume: ImageVolume, expected_order: list[int], step: float
) -> None:
    assert volume.shape == written.hu_volume.shape
    np.testing.assert_allclose(volume.pixels, written.hu_volume[expected_order], atol=HU_TOLERANCE)
    assert [ref.sop_instance_uid for ref in volume.slices] == [
        written.sop_uids[k] for k in expected_order
    ]
    assert volume.spacing[0] == pytest.approx(step, abs=1e-3)
    assert volume.problems == []


def test_descending_positions_sort_ascending_along_the_normal(tmp_path: Path) -> None:
    written = write_series(tmp_path / "descending", seed=21)
    n = len(written.paths)
    # InstanceNumber 1 is now the highest slice: order must come from positions
    positions = np.array([[-30.0, -20.0, 50.0 - 2.5 * z] for z in range(n)])
    rewrite_geometry(written.paths, (1, 0, 0, 0, 1, 0), positions)

    volume = _only_volume(written.folder)

    _assert_sorted_along_normal(written, volume, list(range(n))[::-1], 2.5)
    assert volume.positions is not None
    assert np.all(np.diff(volume.positions[:, 2]) > 0)


def test_sagittal_series_sorts_along_its_normal(tmp_path: Path) -> None:
    written = write_series(tmp_path / "sagittal", seed=22)
    n = len(written.paths)
    # rows run anterior→posterior (+y), columns head→feet (-z): the normal is -x
    orientation = (0, 1, 0, 0, 0, -1)
    positions = np.array([[10.0 + 1.5 * z, -90.0, 120.0] for z in range(n)])
    rewrite_geometry(written.paths, orientation, positions)

    volume = _only_volume(written.folder)

    # increasing position along -x is decreasing x: the last written slice comes first
    _assert_sorted_along_normal(written, volume, list(range(n))[::-1], 1.5)
    assert volume.row_direction == (0.0, 1.0, 0.0)
    assert volume.col_direction == (0.0, 0.0, -1.0)


def test_oblique_series_sorts_along_the_normal_not_a_coordinate(tmp_path: Path) -> None:
    written = write_series(tmp_path / "oblique", seed=23)
    n = len(written.paths)
    angle = math.radians(30)
    row = np.array([1.0, 0.0, 0.0])
    col = np.array([0.0, math.cos(angle), math.sin(angle)])
    normal = np.cross(row, col)
    # in-plane shifts along the column direction scramble the z coordinate, not the normal
    shifts = np.array([9.0, -8.0, 7.0, -9.0, 8.0, -7.0, 9.0, -8.0])[:n]
    positions = np.array([2.0 * z * normal + shift * col for z, shift in enumerate(shifts)])
    assert list(np.argsort(positions[:, 2])) != list(range(n))
    rewrite_geometry(written.paths, (*row, *col), positions)

    volume = _only_volume(written.folder)

    _assert_sorted_along_normal(written, volume, list(range(n)), 2.0)


def test_series_without_positions_falls_back_to_instance_number(ct_series: WrittenSeries) -> None:
    for path in ct_series.paths:
        ds = pydicom.dcmread(path)
        del ds.ImagePositionPatient
        ds.save_as(path, enforce_file_format=True)

    volume = _only_volume(ct_series.folder)

    np.testing.assert_allclose(volume.pixels, ct_series.hu_volume, atol=HU_TOLERANCE)
    assert any("InstanceNumber" in p for p in volume.problems)
    assert volume.positions is None


def _add_to_series(
    written: WrittenSeries, name: str, rows: int, cols: int, **geometry: object
) -> Path:
    """A file of another size or plane, filed under ``written``'s series UID."""
    from pydicom.uid import generate_uid

    ds = pydicom.dcmread(written.paths[0])
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.Rows, ds.Columns = rows, cols
    ds.PixelData = np.full((rows, cols), 1024, dtype=np.uint16).tobytes()
    for keyword, value in geometry.items():
        setattr(ds, keyword, value)
    path = written.folder / name
    ds.save_as(path, enforce_file_format=True)
    return path


def test_a_series_of_two_sizes_is_analysed_in_two_parts(ct_series: WrittenSeries) -> None:
    # a screenshot or a dose page filed under the series' UID used to lose the whole series
    odd = _add_to_series(ct_series, "zz-odd-size.dcm", 32, 32)

    volumes = _volumes(list(load_paths([ct_series.folder])))

    assert [v.shape for v in volumes] == [ct_series.hu_volume.shape, (1, 32, 32)]
    main, part = volumes
    np.testing.assert_allclose(main.pixels, ct_series.hu_volume, atol=HU_TOLERANCE)
    assert odd not in main.source_files and part.source_files == [odd]
    assert main.series_uid == part.series_uid == ct_series.series_uid
    for volume, geometry in ((main, "64x48 axial, 8 file(s)"), (part, "32x32 axial, 1 file(s)")):
        (note,) = [p for p in volume.problems if "geometries" in p]
        assert note.endswith(geometry), note
    assert (main.attributes["SeriesPart"], part.attributes["SeriesPart"]) == (
        "1 of 2: 64x48 axial",
        "2 of 2: 32x32 axial",
    )
    # each part gets its own reports: the second must not overwrite the first
    from medforensics.report.build import report_stem

    assert report_stem(main) != report_stem(part)


def test_a_localizer_in_the_axial_series_is_its_own_image(ct_series: WrittenSeries) -> None:
    # same size, another plane: stacked with the axial slices it would be a bogus slice
    rows, cols = ct_series.hu_volume.shape[1:]
    scout = _add_to_series(
        ct_series,
        "zz-localizer.dcm",
        rows,
        cols,
        ImageOrientationPatient=[1.0, 0.0, 0.0, 0.0, 0.0, -1.0],
        ImageType=["ORIGINAL", "PRIMARY", "LOCALIZER"],
    )

    volumes = _volumes(list(load_paths([ct_series.folder])))

    assert [v.shape[0] for v in volumes] == [ct_series.hu_volume.shape[0], 1]
    assert volumes[1].source_files == [scout]
    assert "coronal" in " ".join(volumes[1].problems)
    assert not [p for p in volumes[0].problems if "oriented differently" in p]
    results = list(scan_paths([str(ct_series.folder)]))
    assert [r.error for r in results] == [None, None]


def test_secondary_captures_without_positions_stand_alone(ct_series: WrittenSeries) -> None:
    # screenshots or photos filed in one series are separate pictures, not slices of a volume
    # (a CT series that lost its positions stays one volume: the InstanceNumber test above)
    for path in ct_series.paths:
        ds = pydicom.dcmread(path)
        ds.Modality = "OT"
        del ds.ImagePositionPatient
        ds.save_as(path, enforce_file_format=True)

    volumes = _volumes(list(load_paths([ct_series.folder])))

    assert len(volumes) == len(ct_series.paths)
    assert all(v.shape == (1, *ct_series.hu_volume.shape[1:]) for v in volumes)


def _two_stacks(tmp_path: Path, **tags: tuple[object, object]) -> tuple[Path, list[WrittenSeries]]:
    """Two 8-slice stacks at the same positions under one series UID, in one folder, the
    files of each given ``tags`` (keyword: (first stack's value, second's))."""
    from pydicom.uid import generate_uid

    uid = generate_uid()
    folder = tmp_path / "two-stacks"
    folder.mkdir()
    stacks = []
    for k in range(2):
        written = write_series(tmp_path / f"stack{k}", seed=3 + k, series_uid=uid)
        moved = []
        for path in written.paths:
            ds = pydicom.dcmread(path)
            for keyword, values in tags.items():
                setattr(ds, keyword, values[k])
            target = folder / f"s{k}-{path.name}"
            ds.save_as(target, enforce_file_format=True)
            moved.append(target)
        stacks.append(dataclasses.replace(written, folder=folder, paths=moved))
    return folder, stacks


def test_stacks_at_the_same_positions_are_analysed_apart(tmp_path: Path) -> None:
    # two echoes (or phases, or b-values) of every slice in one series: stacked together they
    # would sit side by side as neighbouring "slices" and a slice index would not be a place
    folder, stacks = _two_stacks(tmp_path, EchoTime=(80.0, 10.0))

    volumes = _volumes(list(load_paths([folder])))

    assert [v.shape for v in volumes] == [stacks[0].hu_volume.shape] * 2
    # ordered by echo time: the 10 ms stack (written second) first
    for volume, stack in zip(volumes, stacks[::-1], strict=True):
        assert volume.source_files == stack.paths
        np.testing.assert_allclose(volume.pixels, stack.hu_volume, atol=HU_TOLERANCE)
        assert volume.positions is not None
        np.testing.assert_allclose(volume.positions, stack.positions, atol=1e-4)
        assert not [p for p in volume.problems if "share" in p]
    assert [v.attributes["SeriesPart"] for v in volumes] == [
        "1 of 2: echo time 10.0 ms",
        "2 of 2: echo time 80.0 ms",
    ]
    (note,) = [p for p in volumes[0].problems if "analysed apart" in p]
    assert "told apart by EchoTime" in note and note.endswith("echo time 10.0 ms, 8 file(s)")
    from medforensics.report.build import report_stem

    assert report_stem(volumes[0]) != report_stem(volumes[1])


def test_stacks_nothing_tells_apart_stay_one_volume_with_a_note(tmp_path: Path) -> None:
    # an attribute that differs per file (AcquisitionNumber of a sequential scan) is no stack:
    # it takes 16 values where two images share each position
    folder, _ = _two_stacks(tmp_path)
    for k, path in enumerate(sorted(folder.iterdir())):
        ds = pydicom.dcmread(path)
        ds.AcquisitionNumber = k + 1
        ds.save_as(path, enforce_file_format=True)

    volume = _only_volume(folder)

    assert volume.shape[0] == 16
    assert "SeriesPart" not in volume.attributes
    assert any("share" in p for p in volume.problems)
