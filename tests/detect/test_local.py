"""The local forensic network: residual input, checkpoint files, training and the detector."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from medforensics.detect.checkpoint import (
    CheckpointError,
    card_path,
    load_checkpoint,
    save_checkpoint,
)
from medforensics.detect.local import LocalDetector
from medforensics.detect.local_net import (
    IN_CHANNELS,
    STRIDE,
    ResidualFCN,
    ResidualFilter,
    body_cells,
    prepare,
)
from medforensics.io.types import ImageVolume
from medforensics.samples.phantom import chest_ct_phantom
from medforensics.train.local import LocalTrainConfig, _cell_target
from medforensics.train.pipeline import localisation_hit, pairs, split_volumes, train_ct_local


def _volume(n: int = 6, size: int = 128, seed: int = 0, name: str = "p") -> ImageVolume:
    pixels = np.rint(chest_ct_phantom(n_slices=n, size=size, rng=np.random.default_rng(seed)))
    return ImageVolume(
        input=f"/data/{name}/series",
        kind="dicom-series",
        modality="CT",
        pixels=pixels.astype(np.float32),
        spacing=(2.5, 0.7, 0.7),
        study_uid=f"1.2.3.{seed}",
        attributes={"Manufacturer": "Phantom", "ManufacturerModelName": f"P{seed % 2}"},
    )


def test_residual_filters_remove_smooth_content_and_keep_noise() -> None:
    ramp = np.add.outer(np.arange(64.0), 2 * np.arange(64.0)).astype(np.float32)  # linear
    out = ResidualFilter()(torch.from_numpy(ramp)[None, None])
    assert out.shape == (1, 3, 64, 64)
    assert float(out[..., 2:-2, 2:-2].abs().max()) < 1e-4
    noise = np.random.default_rng(0).normal(0, 10, (64, 64)).astype(np.float32)
    assert float(ResidualFilter()(torch.from_numpy(noise)[None, None]).std()) > 5


def test_prepare_normalises_by_noise_and_repeats_centre_without_context() -> None:
    volume = _volume(n=3)
    prep = prepare(volume.pixels, "CT", ResidualFilter(), 1, 2)
    assert prep.residuals.shape == (1, IN_CHANNELS, 128, 128)
    assert prep.cells.shape == (1, 128 // STRIDE, 128 // STRIDE)
    body = np.repeat(np.repeat(prep.cells[0], STRIDE, 0), STRIDE, 1)
    centre = prep.residuals[0, 3:6].numpy()
    # divided by its own robust sigma: median |r| on the body is ~0.6745
    assert 0.5 < float(np.median(np.abs(centre[0][body]))) < 0.9
    assert float(prep.residuals.abs().max()) <= 8.0
    alone = prepare(volume.pixels, "CT", ResidualFilter(), 1, 2, context=False)
    assert torch.equal(alone.residuals[0, 0:3], alone.residuals[0, 3:6])
    assert not torch.equal(prep.residuals[0, 0:3], prep.residuals[0, 3:6])


def test_body_cells_cover_the_body_not_the_air() -> None:
    image = _volume(n=1).pixels[0]
    cells = body_cells(image, "CT")
    assert cells[8, 8] and not cells[0, 0]
    assert 0.2 < cells.mean() < 0.9


def test_network_maps_at_stride_eight() -> None:
    net = ResidualFCN(width=8).eval()
    with torch.inference_mode():
        out = net(torch.zeros(2, IN_CHANNELS, 64, 96))
    assert out.shape == (2, 1, 8, 12)


def test_cell_target_marks_touched_cells_and_ignores_edges() -> None:
    mask = np.zeros((16, 16), dtype=bool)
    mask[0:8, 0:8] = True  # cell (0,0) fully
    mask[8, 8] = True  # cell (1,1) barely
    target = _cell_target(mask)
    assert target[0, 0] == 1.0 and target[0, 1] == 0.0 and math.isnan(target[1, 1])


def test_checkpoint_round_trip_and_errors(tmp_path: Path) -> None:
    net = ResidualFCN(width=8)
    path = save_checkpoint(tmp_path / "m.pt", net.state_dict(), {"architecture": {"width": 8}})
    state, meta = load_checkpoint(path)
    assert meta == {"architecture": {"width": 8}}
    assert all(torch.equal(state[k], v) for k, v in net.state_dict().items())
    assert card_path(path).read_text().strip().startswith("{")
    with pytest.raises(CheckpointError, match="no such model file"):
        load_checkpoint(tmp_path / "missing.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a model")
    with pytest.raises(CheckpointError, match=r"junk\.pt"):
        load_checkpoint(tmp_path / "junk.pt")
    torch.save({"weights": torch.zeros(1)}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="not a medforensics checkpoint"):
        load_checkpoint(tmp_path / "other.pt")


def test_localisation_hit_uses_pixels_and_slices() -> None:
    mask = np.zeros((6, 64, 64), dtype=bool)
    mask[2, 30:34, 30:34] = True
    assert localisation_hit([(3, 40, 40)], mask)
    assert not localisation_hit([(5, 32, 32)], mask)  # 3 slices away
    assert not localisation_hit([(2, 60, 60)], mask)  # > 20 px away


def test_split_holds_out_whole_patients_or_slabs() -> None:
    many = [_volume(seed=s, name=f"p{s}") for s in range(4)]
    train, val, note = split_volumes(many, seed=0)
    assert note.startswith("by patient")
    assert {v.study_uid for v in train}.isdisjoint({v.study_uid for v in val})
    one = [_volume(n=24)]
    train, val, note = split_volumes(one, seed=0)
    assert note.startswith("by slab")
    assert train[0].shape[0] + val[0].shape[0] + 2 == 24


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    volumes = [_volume(n=10, seed=s, name=f"p{s}") for s in range(3)]
    out = tmp_path_factory.mktemp("model") / "tiny.pt"
    config = LocalTrainConfig(rounds=1, steps_per_round=3, batch=4, width=8, seed=1)
    train_ct_local(volumes, out, config, attacks=("inject", "inpaint"), data_description="test")
    return out


def test_training_writes_a_complete_checkpoint(tiny_model: Path) -> None:
    state, meta = load_checkpoint(tiny_model)
    assert meta["detector"] == "ct-local"
    assert set(meta["operating_point"]) >= {"manipulated_at", "authentic_below", "target_fpr"}
    assert {"a", "b"} <= set(meta["calibration"])
    assert meta["training"]["split"].startswith("by patient")
    assert meta["card"]["data"] == "test"
    assert meta["validation"]["authentic_cases"] > 0
    assert state


def test_detector_maps_findings_and_leaves_input_alone(tiny_model: Path) -> None:
    detector = LocalDetector(checkpoint=tiny_model, max_findings=3)
    volume = _volume(n=5, seed=9)
    before = volume.pixels.copy()
    result = detector.detect(volume)
    assert np.array_equal(volume.pixels, before)
    assert 0.0 <= result.score <= 1.0
    assert result.anomaly_map is not None and result.anomaly_map.shape == (5, 16, 16)
    assert result.map_stride == STRIDE
    for finding in result.findings:
        assert 0 <= finding.slice < 5 and 0 <= finding.row < 128 and 0 <= finding.col < 128
    assert result.score == pytest.approx(
        detector.calibration.probability(detector.statistic(volume)), abs=1e-6
    )
    assert detector.describe()["checkpoint_sha256"]


def test_detector_handles_single_slices_and_tiny_images(tiny_model: Path) -> None:
    detector = LocalDetector(checkpoint=tiny_model)
    single = _volume(n=1, seed=3)
    assert detector.detect(single).anomaly_map.shape == (1, 16, 16)  # type: ignore[union-attr]
    tiny = dataclasses.replace(single, pixels=single.pixels[:, :20, :20])
    result = detector.detect(tiny)
    assert result.verdict == "inconclusive" and "too small" in result.notes[0]


def test_pairs_match_twins_to_their_authentic_chunk() -> None:
    from medforensics.train.cases import make_cases

    cases = list(make_cases([_volume(n=10)], ["inject"], seed=0, chunk=5, per_chunk=2))
    matched = pairs(cases)
    assert matched and all(a.attack is None and t.attack == "inject" for a, t in matched)
    for authentic, tampered in matched:
        assert authentic.volume.pixels.shape == tampered.volume.pixels.shape
        assert np.array_equal(tampered.volume.pixels, np.rint(tampered.volume.pixels))


def test_detector_declines_other_modalities(tiny_model: Path) -> None:
    radiograph = dataclasses.replace(_volume(n=1), modality="DX")
    result = LocalDetector(checkpoint=tiny_model).detect(radiograph)
    assert result.verdict == "inconclusive"
    assert "trained on CT only" in result.notes[0]


def _radiograph(seed: int, name: str, modality: str = "DX") -> ImageVolume:
    from medforensics.samples.phantom import radiograph_phantom

    pixels = radiograph_phantom(size=160, rng=np.random.default_rng(seed))
    return ImageVolume(input=name, kind="image", modality=modality, pixels=pixels, bits_stored=12)


def test_radiograph_model_trains_on_few_images_and_answers_for_png_inputs(
    tmp_path: Path,
) -> None:
    from medforensics.detect.local import XrLocalDetector
    from medforensics.train.pipeline import train_local_model

    images = [_radiograph(s, f"cxr{s}.png") for s in range(3)]
    patients = {v.input: f"patient-{i}" for i, v in enumerate(images)}
    config = LocalTrainConfig(rounds=1, steps_per_round=2, batch=4, width=8, seed=0)
    out = tmp_path / "xr.pt"
    result = train_local_model(
        images, out, config, attacks=("inject",), modality="XR", patients=patients
    )
    meta = result.meta
    assert meta["detector"] == "xr-local" and "OT" in meta["modalities"]
    assert meta["training"]["chunk_slices"] == 1
    assert meta["training"]["twins_per_chunk"] > 1  # few images: several twins each
    # one validation image: its rotations and flips give the operating point more to rest on
    assert "rotations and flips" in meta["training"]["split"]
    assert meta["validation"]["authentic_cases"] == 8
    detector = XrLocalDetector(checkpoint=out)
    png = _radiograph(7, "upload.png", modality="OT")
    answer = detector.detect(png)
    assert answer.detector == "xr-local" and 0.0 <= answer.score <= 1.0
    assert answer.anomaly_map is not None and answer.anomaly_map.shape == (1, 20, 20)
    declined = detector.detect(_volume(n=2))  # CT goes elsewhere
    assert declined.verdict == "inconclusive" and "trained on" in declined.notes[0]


def test_train_refuses_images_of_another_modality(tmp_path: Path) -> None:
    from medforensics.train.pipeline import train_local_model

    with pytest.raises(ValueError, match="no MR images to train on"):
        train_local_model([_volume(n=4)], tmp_path / "m.pt", modality="MR")
