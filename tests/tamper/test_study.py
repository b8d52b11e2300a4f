"""Study-wide attacks: one edit at one place in patient space, in every MR series of a study."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pydicom
import pytest
import typer
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage, generate_uid
from typer.testing import CliRunner

from medforensics.cli import tamper as tamper_cli
from medforensics.io.loader import load_paths
from medforensics.io.types import ImageVolume
from medforensics.samples import correlated_noise
from medforensics.tamper import AttackError
from medforensics.tamper.geometry import VoxelGrid, index_grid, patient_grid
from medforensics.tamper.sequence import guess_sequence
from medforensics.tamper.study import simulate_study

AXIAL = ((1.0, 0.0, 0.0), (0.0, 1.0, 0.0))
SAGITTAL = ((0.0, 1.0, 0.0), (0.0, 0.0, -1.0))  # columns run anterior-posterior, rows downwards
#: tissue values per sequence: white matter, grey matter, CSF, background
TISSUE = {
    "T1": (700.0, 500.0, 150.0, 10.0),
    "T2": (400.0, 600.0, 1200.0, 10.0),
    "FLAIR": (450.0, 600.0, 100.0, 10.0),
}
#: (description, TR, TE, TI, slices, matrix, pixel mm, slice mm, orientation)
SERIES = {
    "T1": ("AX T1 SE", 500, 15, None, 12, 64, 4.0, 5.0, AXIAL),
    "T2": ("AX T2 FSE", 4000, 100, None, 24, 128, 2.0, 2.5, AXIAL),
    "FLAIR": ("SAG FLAIR", 9000, 120, 2500, 10, 64, 4.0, 6.0, SAGITTAL),
}


def head(points: np.ndarray, sequence: str) -> np.ndarray:
    """A head in patient space (mm): brain, white-matter core, ventricles."""
    wm, gm, csf, air = TISSUE[sequence]

    def inside(
        semi: tuple[float, float, float], centre: tuple[float, ...] = (0, 0, 0)
    ) -> np.ndarray:
        return (((points - np.asarray(centre)) / np.asarray(semi)) ** 2).sum(axis=-1) <= 1.0

    values = np.full(points.shape[:-1], air)
    values[inside((70, 90, 60))] = gm
    values[inside((52, 70, 45))] = wm
    values[inside((10, 25, 12), (0, 5, 8))] = csf
    return values


def make_series(
    sequence: str, study_uid: str = "1.2.3.4", frame_uid: str = "1.2.3.4.9", seed: int = 0
) -> ImageVolume:
    """One series of the phantom study, sampled on its own grid with its own noise."""
    description, tr, te, ti, n, size, pixel, thickness, (row_dir, col_dir) = SERIES[sequence]
    row, col = np.asarray(row_dir), np.asarray(col_dir)
    normal = np.cross(row, col)
    half = (size - 1) / 2 * pixel
    first = -half * row - half * col - (n - 1) / 2 * thickness * normal
    positions = np.array([first + z * thickness * normal for z in range(n)])
    steps = np.stack([thickness * normal, pixel * col, pixel * row])
    grid = VoxelGrid(first, steps, (n, size, size), "patient", thickness)
    index = np.stack(np.meshgrid(*[np.arange(k) for k in (n, size, size)], indexing="ij"), -1)
    rng = np.random.default_rng(seed)
    noise = np.stack([correlated_noise((size, size), 12.0, rng, 0.5) for _ in range(n)])
    pixels = np.clip(head(grid.to_mm(index), sequence) + noise, 0, None).astype(np.float32)
    attributes = {"SeriesDescription": description, "FrameOfReferenceUID": frame_uid}
    attributes.update(RepetitionTime=str(tr), EchoTime=str(te), SliceThickness=str(thickness))
    if ti is not None:
        attributes["InversionTime"] = str(ti)
    return ImageVolume(
        input=f"{sequence.lower()}-series",
        kind="dicom-series",
        modality="MR",
        pixels=pixels,
        spacing=(thickness, pixel, pixel),
        row_direction=tuple(row_dir),  # type: ignore[arg-type]
        col_direction=tuple(col_dir),  # type: ignore[arg-type]
        positions=positions,
        series_uid=f"{study_uid}.{sorted(SERIES).index(sequence) + 1}",
        study_uid=study_uid,
        attributes=attributes,
    )


@pytest.fixture(scope="module")
def study() -> list[ImageVolume]:
    return [make_series(name, seed=k) for k, name in enumerate(("T1", "T2", "FLAIR"))]


def _grid(volume: ImageVolume) -> VoxelGrid:
    grid = patient_grid(volume)
    assert grid is not None
    return grid


def _assert_same_place(volumes: list[ImageVolume], results: list, key: str = "centre_mm") -> None:
    centres = {tuple(r.truth.params["study"][key]) for r in results}
    assert len(centres) == 1  # placed once
    target = np.asarray(centres.pop())
    for volume, result in zip(volumes, results, strict=True):
        grid = _grid(volume)
        assert result.truth.mask.any()
        assert result.truth.mask.shape == volume.shape
        offset = grid.to_mm(result.truth.centre) - target
        # within half a voxel along each of the series' own axes: the nearest voxel
        along = np.abs(grid.axes @ offset)
        assert np.all(along <= grid.spacing / 2 + 1e-6), (volume.input, along, grid.spacing)


def test_lesion_sits_at_one_patient_position_in_every_series(study: list[ImageVolume]) -> None:
    results = simulate_study(study, "inject", 4, diameter_mm=16.0)
    _assert_same_place(study, results)
    centre = np.asarray(results[0].truth.params["study"]["centre_mm"])
    for volume, result in zip(study, results, strict=True):
        # the changed voxels surround the common centre, whatever the grid and orientation
        points = _grid(volume).to_mm(np.argwhere(result.truth.mask))
        assert np.linalg.norm(points.mean(axis=0) - centre) < 8.0
        assert np.linalg.norm(points - centre, axis=1).max() < 16.0 * 1.6
        params = result.truth.params
        assert params["study"]["geometry"] == "patient"
        assert params["study"]["series_uid"] == volume.series_uid
        assert params["shape_seed"] == results[0].truth.params["shape_seed"]
        changed = result.pixels != volume.pixels
        assert not changed[~result.truth.mask].any()  # nothing outside the mask


@pytest.mark.parametrize("seed", [1, 2])
def test_contrast_follows_each_sequence(study: list[ImageVolume], seed: int) -> None:
    results = simulate_study(study, "inject", seed, diameter_mm=18.0, t1_appearance="hypo")
    signs = {}
    for volume, result in zip(study, results, strict=True):
        params = result.truth.params
        core = result.truth.mask & (np.abs(result.pixels - volume.pixels) > 0)
        signs[params["study"]["sequence"]] = np.sign(
            float(np.mean(result.pixels[core] - volume.pixels[core]))
        )
        assert params["matched"]["mode"] == "blend"
    assert signs == {"T1": -1.0, "T2": 1.0, "FLAIR": 1.0}
    appearance = {
        r.truth.params["study"]["sequence"]: r.truth.params["appearance"] for r in results
    }
    assert appearance == {"T1": "hypointense", "T2": "hyperintense", "FLAIR": "hyperintense"}


def test_each_series_gets_its_own_tissue_scale_and_noise(study: list[ImageVolume]) -> None:
    results = simulate_study(study, "inject", 6, diameter_mm=16.0)
    matched = [r.truth.params["matched"] for r in results]
    # T2 is scaled to its own bright tissue, T1 to its own: the medians differ per series
    assert len({m["tissue_median"] for m in matched}) == 3
    assert all(m["noise_sigma"] > 0 for m in matched)


def test_unknown_sequences_keep_one_sign(study: list[ImageVolume]) -> None:
    for seed in (1, 2, 3):
        results = simulate_study(study, "inject", seed, sequences=["unknown"] * 3)
        contrasts = {np.sign(r.truth.params["contrast"]) for r in results}
        assert len(contrasts) == 1


def test_the_seed_decides_everything(study: list[ImageVolume]) -> None:
    first = simulate_study(study, "inject", 11)
    again = simulate_study(list(reversed(study)), "inject", 11)[::-1]  # input order is irrelevant
    for a, b in zip(first, again, strict=True):
        np.testing.assert_array_equal(a.pixels, b.pixels)
        assert a.truth.params["study"]["centre_mm"] == b.truth.params["study"]["centre_mm"]
    other = simulate_study(study, "inject", 12)
    assert (
        other[0].truth.params["study"]["centre_mm"] != first[0].truth.params["study"]["centre_mm"]
    )


@pytest.mark.parametrize("attack", ["remove", "inpaint", "splice"])
def test_region_attacks_share_one_place(study: list[ImageVolume], attack: str) -> None:
    results = simulate_study(study, attack, 3)
    _assert_same_place(study, results)
    assert {r.truth.attack for r in results} == {attack}
    radius = results[0].truth.params["study"]["radius_mm"]
    for volume, result in zip(study, results, strict=True):
        grid = _grid(volume)
        ball = np.linalg.norm(
            grid.to_mm(np.argwhere(result.truth.mask))
            - np.asarray(result.truth.params["study"]["centre_mm"]),
            axis=1,
        )
        assert ball.min() < max(grid.spacing)  # the region holds the centre
        assert ball.max() < 2.5 * radius + 2 * max(grid.spacing)


def test_copy_move_uses_one_displacement_in_mm(study: list[ImageVolume]) -> None:
    results = simulate_study(study, "copy-move", 5, match_mean=False, feather_px=0.0)
    _assert_same_place(study, results)
    wanted = np.asarray(results[0].truth.params["study"]["displacement_mm"])
    assert np.linalg.norm(wanted) > 2 * results[0].truth.params["study"]["radius_mm"]
    for volume, result in zip(study, results, strict=True):
        grid = _grid(volume)
        got = np.asarray(result.truth.params["displacement_mm"])
        assert np.all(np.abs(grid.axes @ (got - wanted)) <= grid.spacing + 1e-6)
        assert result.truth.params["flip"] == "none" and not result.truth.params["turn"]
        # the pasted pixels are the source's (no feathering, no mean shift asked), moved
        source = np.asarray(result.truth.params["source"])
        target = np.asarray(result.truth.params["centre"])
        moved = tuple(source - target + result.truth.centre)
        assert result.pixels[result.truth.centre] == pytest.approx(volume.pixels[moved], abs=1e-3)


def test_laundering_is_drawn_per_series(study: list[ImageVolume]) -> None:
    results = simulate_study(study, "inject", 2, launder=["noise"])
    sigmas = [r.truth.params["laundering"][0]["sigma"] for r in results]
    assert len(set(sigmas)) == 3  # each series' own noise level
    for volume, result in zip(study, results, strict=True):
        assert (result.pixels != volume.pixels)[~result.truth.mask].any()


def test_series_of_different_studies_are_refused(study: list[ImageVolume]) -> None:
    other = make_series("T2", study_uid="9.9.9", frame_uid="9.9.9.1")
    other = replace(other, input="other-study")
    with pytest.raises(AttackError, match="not one study") as caught:
        simulate_study([study[0], other], "inject", 1)
    assert "t1-series" in str(caught.value) and "other-study" in str(caught.value)
    assert "9.9.9" in str(caught.value)
    moved = replace(study[1], attributes={**study[1].attributes, "FrameOfReferenceUID": "7.7"})
    with pytest.raises(AttackError, match="FrameOfReferenceUID"):
        simulate_study([study[0], moved], "inject", 1)
    ct = replace(study[0], modality="CT")
    with pytest.raises(AttackError, match="MR"):
        simulate_study([ct, study[1]], "inject", 1)
    with pytest.raises(AttackError, match="no study-wide form"):
        simulate_study(study, "launder", 1)


def test_without_geometry_voxel_indices_are_used_and_said(study: list[ImageVolume]) -> None:
    bare = [replace(v, positions=None, row_direction=None, col_direction=None) for v in study[:2]]
    results = simulate_study(bare, "inject", 3, diameter_mm=14.0)
    centre = np.asarray(results[0].truth.params["study"]["centre_mm"])
    for volume, result in zip(bare, results, strict=True):
        study_block = result.truth.params["study"]
        assert study_block["geometry"] == "voxel-index"
        assert "t1-series" in study_block["geometry_note"]
        grid = index_grid(volume)
        assert np.all(np.abs(grid.to_mm(result.truth.centre) - centre) <= grid.spacing / 2 + 1e-6)


def test_grid_follows_the_dicom_convention() -> None:
    path = Path(pydicom.data.__file__).parent / "test_files" / "MR_small.dcm"
    volume = next(v for v in load_paths([str(path)]) if isinstance(v, ImageVolume))
    ds = pydicom.dcmread(path, stop_before_pixels=True)
    grid = _grid(volume)
    origin = np.asarray(ds.ImagePositionPatient, dtype=float)
    row_dir = np.asarray(ds.ImageOrientationPatient[:3], dtype=float)
    col_dir = np.asarray(ds.ImageOrientationPatient[3:], dtype=float)
    # (r, c) lies at IPP + c * PixelSpacing[1] * row direction + r * PixelSpacing[0] * column one
    expected = (
        origin + 5 * float(ds.PixelSpacing[1]) * row_dir + 3 * float(ds.PixelSpacing[0]) * col_dir
    )
    np.testing.assert_allclose(grid.to_mm([0, 3, 5]), expected)
    np.testing.assert_allclose(grid.to_index(expected), [0, 3, 5], atol=1e-9)
    assert grid.nearest_voxel(expected + 0.4 * float(ds.PixelSpacing[0]) * col_dir) == (0, 3, 5)


def test_sequence_guess() -> None:
    assert guess_sequence({"SeriesDescription": "t1_mprage_sag"})[0] == "T1"
    assert guess_sequence({"SeriesDescription": "AX T1 +C"})[0] == "T1C"
    assert guess_sequence({"SeriesDescription": "Ax T2 FLAIR"})[0] == "FLAIR"
    assert guess_sequence({"SeriesDescription": "T1 FLAIR"})[0] == "T1"
    assert guess_sequence({"ProtocolName": "t2_tse_tra"})[0] == "T2"
    assert guess_sequence({"RepetitionTime": "450", "EchoTime": "12"})[0] == "T1"
    assert (
        guess_sequence({"RepetitionTime": "9000", "EchoTime": "90", "InversionTime": "2500"})[0]
        == "FLAIR"
    )
    assert guess_sequence({"RepetitionTime": "3000", "EchoTime": "20"})[0] == "PD"
    assert guess_sequence({"SeriesDescription": "DWI b1000"})[0] == "unknown"
    assert guess_sequence({}) == ("unknown", "no sequence name or timing in the header")


# ---------------------------------------------------------------- DICOM round trip


def write_series(volume: ImageVolume, folder: Path, sequence: str) -> None:
    """``volume`` as one MR file per slice, with its geometry and timing."""
    folder.mkdir(parents=True, exist_ok=True)
    description, tr, te, ti, *_ = SERIES[sequence]
    for z in range(volume.shape[0]):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = MRImageStorage
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = Dataset()
        ds.file_meta = meta
        ds.SOPClassUID, ds.SOPInstanceUID = MRImageStorage, meta.MediaStorageSOPInstanceUID
        ds.StudyInstanceUID, ds.SeriesInstanceUID = volume.study_uid, volume.series_uid
        ds.FrameOfReferenceUID = volume.attributes["FrameOfReferenceUID"]
        ds.PatientID, ds.Modality, ds.SeriesDescription = "HEAD-1", "MR", description
        ds.RepetitionTime, ds.EchoTime = tr, te
        if ti is not None:
            ds.InversionTime = ti
        ds.InstanceNumber = z + 1
        ds.ImagePositionPatient = [float(v) for v in volume.positions[z]]  # type: ignore[index]
        ds.ImageOrientationPatient = [*volume.row_direction, *volume.col_direction]  # type: ignore[misc]
        ds.PixelSpacing = [volume.spacing[1], volume.spacing[2]]
        ds.SliceThickness = volume.spacing[0]
        ds.Rows, ds.Columns = volume.shape[1:]
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
        ds.PixelData = np.rint(volume.pixels[z]).clip(0, 4095).astype(np.uint16).tobytes()
        ds.save_as(folder / f"{sequence}-{z:03d}.dcm", enforce_file_format=True)


def _app() -> typer.Typer:
    app = typer.Typer()

    @app.callback()
    def _root() -> None:
        """Test app."""

    tamper_cli.register(app)
    return app


def test_cli_tampers_a_study_and_writes_it_back(study: list[ImageVolume], tmp_path: Path) -> None:
    source = tmp_path / "study"
    for volume, name in zip(study, ("T1", "T2", "FLAIR"), strict=True):
        write_series(volume, source / name, name)
    out = tmp_path / "out"
    result = CliRunner().invoke(
        _app(), ["tamper", str(source), str(out), "--study", "--attack", "inject", "--seed", "7"]
    )
    assert result.exit_code == 0, result.output
    truth = json.loads((out / "ground_truth.json").read_text())
    assert truth["study"]["study_uid"] == study[0].study_uid
    assert len(truth["cases"]) == 3
    assert len({tuple(c["params"]["study"]["centre_mm"]) for c in truth["cases"]}) == 1
    inputs = [v for v in load_paths([str(source)]) if isinstance(v, ImageVolume)]
    expected = simulate_study(inputs, "inject", 7)
    _assert_same_place(inputs, expected)  # geometry as the reader gives it (sagittal included)
    written = {v.series_uid: v for v in load_paths([str(out)]) if isinstance(v, ImageVolume)}
    assert len(written) == 3
    for volume, tampered in zip(inputs, expected, strict=True):
        back = written[volume.series_uid]
        np.testing.assert_allclose(back.pixels, np.clip(np.rint(tampered.pixels), 0, 4095))
        assert not np.array_equal(back.pixels, volume.pixels)
        first = pydicom.dcmread(back.slices[0].source_file, stop_before_pixels=True)
        original = pydicom.dcmread(volume.slices[0].source_file, stop_before_pixels=True)
        assert first == original  # headers untouched
    assert sorted(p.name for p in out.iterdir()) == ["000", "001", "002", "ground_truth.json"]


def test_cli_refuses_a_study_of_mixed_studies(study: list[ImageVolume], tmp_path: Path) -> None:
    source = tmp_path / "mixed"
    write_series(study[0], source / "a", "T1")
    other = replace(make_series("T2", study_uid="5.6.7", frame_uid="5.6.7.1"), series_uid="5.6.7.2")
    write_series(other, source / "b", "T2")
    result = CliRunner().invoke(_app(), ["tamper", str(source), str(tmp_path / "o"), "--study"])
    assert result.exit_code != 0
    assert "not one study" in result.output and "5.6.7" in result.output
