"""Tile features of the classical detector, on phantoms."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest
from scipy import ndimage

from medforensics.detect import copy_move
from medforensics.detect.features import (
    TileGrid,
    duplicated_keypoints,
    feature_names,
    slice_measurements,
    tile_overlap,
    volume_features,
)
from medforensics.samples import chest_ct_phantom

SIZE = 128


def _phantom(n_slices: int = 3, seed: int = 4) -> np.ndarray:
    """Integer HU, as read from a DICOM file."""
    return np.rint(chest_ct_phantom(n_slices, SIZE, np.random.default_rng(seed)))


def _column(name: str) -> int:
    return feature_names().index(name)


def test_shape_names_and_finiteness() -> None:
    features = volume_features(_phantom(), "CT")
    grid = TileGrid()
    assert features.values.shape == (3, *grid.shape(SIZE, SIZE), len(feature_names()))
    assert features.values.shape[1:3] == (SIZE // 16 - 1, SIZE // 16 - 1)
    assert features.names == feature_names()
    assert len(set(features.names)) == len(features.names)
    assert np.isfinite(features.values).all()
    assert features.matrix().shape == (features.n_valid, len(feature_names()))
    # the body is inside, the air in the corners is not
    assert features.valid[:, 3, 3].all()
    assert not features.valid[:, 0, 0].any()


def test_single_slice_has_no_adjacent_slice_features() -> None:
    features = volume_features(_phantom(1), "CT")
    assert features.values.shape[0] == 1
    assert features.n_valid > 10
    across = [k for k, name in enumerate(feature_names()) if "_vs_slices" in name]
    assert not features.values[..., across].any()
    assert not features.values[..., _column("has_adjacent_slices")].any()
    # in a volume, every slice but the first and the last is compared with its neighbours
    volume = volume_features(_phantom(4), "CT")
    flag = volume.values[..., _column("has_adjacent_slices")]
    assert flag[1:3][volume.valid[1:3]].all()
    assert not flag[[0, 3]].any()
    assert volume.values[1:3][..., across].any()
    assert not volume.values[[0, 3]][..., across].any()


def test_flat_treatment_drops_slice_context() -> None:
    pixels = _phantom(3)
    flat = volume_features(pixels, "CT", slice_context=False)
    full = volume_features(pixels, "CT")
    assert not flat.values[..., _column("has_adjacent_slices")].any()
    plane = _column("level_d1_vs_plane")
    np.testing.assert_allclose(flat.values[..., plane], full.values[..., plane])


def test_smoothed_block_lowers_its_noise_level_relative_to_neighbours() -> None:
    pixels = _phantom()
    smoothed = pixels.copy()
    block = (slice(None), slice(48, 80), slice(48, 80))
    smoothed[block] = np.rint(ndimage.gaussian_filter(pixels[block], (0, 2, 2)))
    before = volume_features(pixels, "CT").values[..., _column("level_d1_vs_plane")]
    after = volume_features(smoothed, "CT").values[..., _column("level_d1_vs_plane")]
    # tile (i, j) covers rows 16i..16i+32: tile (3, 3) is exactly the smoothed block
    assert after[1, 3, 3] < before[1, 3, 3] - 1.5
    zeros = volume_features(smoothed, "CT").values[..., _column("zeros_d1_vs_plane")]
    assert zeros[1, 3, 3] > 3


def test_copied_block_is_found_and_authentic_texture_is_not() -> None:
    pixels = _phantom(1, seed=7)
    authentic = [slice_measurements(image, "CT", TileGrid()) for image in pixels]
    assert all(len(found) == 0 for found in duplicated_keypoints(authentic))
    copied = pixels.copy()
    # a 20x20 patch of parenchyma, flipped left-right and shifted in mean, pasted elsewhere
    copied[0, 70:90, 30:50] = pixels[0, 40:60, 30:50][:, ::-1] + 7
    measured = [slice_measurements(image, "CT", TileGrid()) for image in copied]
    (found,) = duplicated_keypoints(measured)
    assert len(found) >= 4
    in_target = (found[:, 0] >= 70) & (found[:, 0] < 90)
    in_source = (found[:, 0] >= 40) & (found[:, 0] < 60)
    assert in_target.any() and in_source.any()
    assert (in_target | in_source).all()
    values = volume_features(copied, "CT").values[..., _column("duplicated_keypoints")]
    assert values[0, 4, 2] > 0  # tile rows 64..96, cols 32..64 holds the copy


def test_repeats_by_chance_are_no_copy_evidence() -> None:
    # noise smoothed below a coarse value grid (heavy lossy compression, an 8-bit export):
    # residual patterns repeat all over the image, so a real copy cannot be told from chance
    pixels = _phantom(1, seed=7)
    smooth = np.rint(ndimage.gaussian_filter(pixels, (0, 4, 4)) / 8) * 8
    copied = smooth.copy()
    copied[0, 70:90, 30:50] = smooth[0, 40:60, 30:50][:, ::-1] + 7
    table = copy_move.KeypointTable.of([slice_measurements(copied[0], "CT", TileGrid())])
    repeated = sum(len(found) for found in table.duplicated())
    assert repeated >= 4
    assert table.chance_repeats(repeated) > copy_move.CHANCE_REPEATS
    values = volume_features(copied, "CT").values[..., _column("duplicated_keypoints")]
    assert not values.any()
    # the same copy in an image with its noise is counted (test above), and nothing repeats
    # by chance there
    noisy = copy_move.KeypointTable.of([slice_measurements(pixels[0], "CT", TileGrid())])
    assert noisy.chance_repeats(0) == 0.0


def test_copy_across_slices_is_found() -> None:
    pixels = _phantom(3, seed=8)
    copied = pixels.copy()
    copied[2, 60:80, 70:90] = pixels[0, 60:80, 30:50]
    measured = [slice_measurements(image, "CT", TileGrid()) for image in copied]
    found = duplicated_keypoints(measured)
    assert len(found[0]) > 0 and len(found[2]) > 0 and len(found[1]) == 0


def test_clamped_padding_is_left_out() -> None:
    pixels = _phantom(1, seed=9)
    padded = pixels.copy()
    padded[0, :, :40] = -3024.0  # outside the reconstruction circle, as GE writes it
    features = volume_features(padded, "CT")
    assert np.isfinite(features.values).all()
    assert not features.valid[0, :, 0].any()
    # tiles well inside the body keep the same noise level as without padding
    clean = volume_features(pixels, "CT")
    level = _column("zeros_d1")
    assert abs(features.values[0, 3, 5, level] - clean.values[0, 3, 5, level]) < 1e-6


def test_tile_overlap_counts_the_covered_share() -> None:
    mask = np.zeros((1, SIZE, SIZE), dtype=bool)
    mask[0, 16:48, 16:48] = True
    overlap = tile_overlap(mask, TileGrid())
    assert overlap[0, 1, 1] == pytest.approx(1.0)
    assert overlap[0, 0, 0] == pytest.approx(0.25)
    assert overlap[0, 5, 5] == 0.0


def test_grid_must_be_a_multiple_of_the_stride() -> None:
    with pytest.raises(ValueError, match="multiple of stride"):
        TileGrid(tile=24, stride=16)


def test_small_image_gives_no_tiles_but_no_error() -> None:
    features = volume_features(np.zeros((1, 20, 20), np.float32) - 1000, "CT")
    assert features.n_valid == 0


def test_features_are_deterministic() -> None:
    pixels = _phantom()
    first, second = volume_features(pixels, "CT"), volume_features(pixels, "CT", workers=2)
    np.testing.assert_array_equal(first.values, second.values)


def _with_copies(n_slices: int = 8) -> np.ndarray:
    pixels = _phantom(n_slices, seed=11)
    copied = pixels.copy()
    copied[6, 60:80, 70:90] = pixels[1, 60:80, 30:50]  # across slices, chunks apart
    copied[4] = pixels[2][:, ::-1]  # a whole slice repeated, flipped
    return copied


def test_features_do_not_depend_on_the_chunk_size() -> None:
    pixels = _with_copies()
    whole = volume_features(pixels, "CT", chunk_slices=len(pixels))
    assert whole.values[..., _column("duplicated_keypoints")][[1, 2, 4, 6]].max(axis=(1, 2)).all()
    for chunk in (1, 3):
        streamed = volume_features(pixels, "CT", chunk_slices=chunk, workers=2)
        np.testing.assert_array_equal(streamed.valid, whole.valid)
        np.testing.assert_array_equal(streamed.values, whole.values)
    with pytest.raises(ValueError, match="chunk_slices"):
        volume_features(pixels, "CT", chunk_slices=0)


def test_keypoint_pairs_voted_in_blocks_give_the_same_copies(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    measured = [slice_measurements(image, "CT", TileGrid()) for image in _with_copies()]
    at_once = duplicated_keypoints(measured)
    assert sum(len(found) for found in at_once) > 100
    monkeypatch.setattr(copy_move, "_PAIR_BLOCK", 7)
    in_blocks = duplicated_keypoints(measured)
    for expected, found in zip(at_once, in_blocks, strict=True):
        np.testing.assert_array_equal(found, expected)


def test_keypoints_are_stored_compactly() -> None:
    (measured,) = [slice_measurements(image, "CT", TileGrid()) for image in _phantom(1)]
    assert measured.positions.dtype == np.int32 and measured.orientation.dtype == np.int8
    rows, cols = measured.keypoints.T
    assert (rows * SIZE + cols == measured.positions).all()
    assert measured.keypoints.shape == (len(measured.hashes), 2)


def test_feature_memory_stays_below_the_volume_size() -> None:
    """Streaming keeps per-tile records only: far less than one copy of the pixels."""
    pixels = np.rint(chest_ct_phantom(40, 256, np.random.default_rng(12))).astype(np.float32)
    tracemalloc.start()
    try:
        volume_features(pixels, "CT", chunk_slices=4)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # measured 6 MB for this 10 MB volume; holding every slice's residuals took 18 MB
    assert peak < pixels.nbytes
