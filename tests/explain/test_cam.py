"""Grad-CAM and occlusion maps: hand-set networks whose evidence lies in a known region."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from scipy import ndimage

torch = pytest.importorskip("torch")
pytest.importorskip("monai")

from medforensics.detect import create_detector  # noqa: E402
from medforensics.detect.calibration import PlattCalibration  # noqa: E402
from medforensics.detect.global_net import (  # noqa: E402
    ARCHITECTURES,
    GlobalCnnDetector,
    GlobalModel,
    GlobalVitDetector,
    SlicePreprocessing,
    build_network,
    default_network,
    slice_logits,
)
from medforensics.detect.local_net import STRIDE  # noqa: E402
from medforensics.detect.types import OperatingPoint  # noqa: E402
from medforensics.explain.cam import NotExplainable, explainable, saliency  # noqa: E402
from medforensics.io.types import ImageVolume  # noqa: E402
from medforensics.samples import chest_ct_phantom  # noqa: E402
from medforensics.tamper import simulate  # noqa: E402

#: network input side and the region (rows, cols of the input grid) the hand-set net looks at
SIZE = 64
REGION = (slice(8, 24), slice(36, 56))
#: image shape: non-square, so that a row/column swap shows
ROWS, COLS = 96, 128


pytestmark = pytest.mark.usefixtures("torch_one_thread")


class RegionTexture(torch.nn.Module):
    """Logit = mean |high-pass residual| inside ``REGION`` of the input; blind elsewhere.

    ``split`` puts the evidence (inside) and everything else (outside) in separate channels, as
    a trained net's last feature map separates what it uses from what it does not.
    """

    def __init__(self) -> None:
        super().__init__()
        self.rectify = torch.nn.Conv2d(2, 2, kernel_size=1, bias=False)
        with torch.no_grad():
            self.rectify.weight.copy_(torch.tensor([[0.0, 1.0], [0.0, -1.0]])[:, :, None, None])
        self.relu = torch.nn.ReLU()
        self.split = RegionSplit()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.split(self.relu(self.rectify(x)))
        inside = features[:, :2].sum(dim=(1, 2, 3))
        return (inside / self.split.inside.sum()).reshape(-1, 1)


class RegionSplit(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        inside = torch.zeros(SIZE, SIZE)
        inside[REGION] = 1.0
        self.register_buffer("inside", inside)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([x * self.inside, x * (1.0 - self.inside)], dim=1)


def _model(arch: str, network: torch.nn.Module, prep: SlicePreprocessing) -> GlobalModel:
    spec = default_network(arch, prep)
    calibration = PlattCalibration(1.0, 0.0)
    return GlobalModel(arch, network.eval(), spec, prep, calibration, calibration, OperatingPoint())


@pytest.fixture(scope="module")
def region_detector() -> GlobalCnnDetector:
    prep = SlicePreprocessing(size=SIZE, window=(-200.0, 200.0), residual=True)
    return GlobalCnnDetector(_model("global-cnn", RegionTexture(), prep))


@pytest.fixture(scope="module")
def noise_volume() -> ImageVolume:
    pixels = np.random.default_rng(0).normal(0.0, 40.0, (3, ROWS, COLS)).astype(np.float32)
    return ImageVolume("noise", "image", "CT", pixels)


@pytest.fixture(scope="module")
def phantom() -> ImageVolume:
    pixels = np.rint(chest_ct_phantom(3, 128, np.random.default_rng(3)))
    return ImageVolume("phantom", "dicom-series", "CT", pixels)


def _image_region() -> np.ndarray:
    """``REGION`` in image pixels (the input grid spans the whole image, stretched)."""
    rows = np.arange(ROWS) * SIZE / ROWS
    cols = np.arange(COLS) * SIZE / COLS
    inside_rows = (rows >= REGION[0].start) & (rows < REGION[0].stop)
    inside_cols = (cols >= REGION[1].start) & (cols < REGION[1].stop)
    return inside_rows[:, None] & inside_cols[None, :]


def _peak(heat: np.ndarray) -> tuple[int, int]:
    row, col = np.unravel_index(int(np.argmax(heat)), heat.shape)
    return int(row), int(col)


def _check_map(heat: np.ndarray, shape: tuple[int, int]) -> None:
    assert heat.shape == shape
    assert heat.dtype == np.float32
    assert np.isfinite(heat).all()
    assert heat.min() >= 0.0
    assert heat.max() == pytest.approx(1.0)


def test_gradcam_shows_only_the_region_the_network_reads(
    region_detector: GlobalCnnDetector, noise_volume: ImageVolume
) -> None:
    heat = saliency(region_detector, noise_volume, 1, "gradcam")
    _check_map(heat, (ROWS, COLS))
    region = _image_region()
    assert region[_peak(heat)]
    # one input pixel of bilinear spill-over at most; nothing further out
    margin = np.ones((3, 3), dtype=bool)
    near = ndimage.binary_dilation(region, margin, iterations=int(np.ceil(COLS / SIZE)))
    assert heat[~near].max() == 0.0
    assert heat[region].sum() > 0.9 * heat.sum()


def test_occlusion_drops_the_score_only_over_the_region(
    region_detector: GlobalCnnDetector, noise_volume: ImageVolume
) -> None:
    heat = saliency(region_detector, noise_volume, 1, "occlusion", mask_size=16, stride=8)
    _check_map(heat, (ROWS, COLS))
    region = _image_region()
    assert region[_peak(heat)]
    # a square can only lower the score if it overlaps the region
    reach = ndimage.binary_dilation(region, np.ones((33, 33), dtype=bool))
    assert heat[~reach].max() == 0.0
    assert heat[region].mean() > 5 * max(heat[~region].mean(), 1e-6)


def test_maps_are_deterministic_and_leave_volume_and_network_alone(
    region_detector: GlobalCnnDetector, noise_volume: ImageVolume
) -> None:
    before = noise_volume.pixels.copy()
    state = {k: v.clone() for k, v in region_detector.model.network.state_dict().items()}
    for method in ("gradcam", "occlusion"):
        first = saliency(region_detector, noise_volume, 2, method)  # type: ignore[arg-type]
        again = saliency(region_detector, noise_volume, 2, method)  # type: ignore[arg-type]
        assert np.array_equal(first, again)
        if method == "gradcam":
            first_gradcam = first
    with torch.inference_mode():  # a caller's inference mode does not stop Grad-CAM
        assert np.array_equal(saliency(region_detector, noise_volume, 2), first_gradcam)
    assert np.array_equal(noise_volume.pixels, before)
    network = region_detector.model.network
    assert not any(module.training for module in network.modules())
    assert all(torch.equal(v, state[k]) for k, v in network.state_dict().items())
    assert all(p.grad is None for p in network.parameters())


def test_shipped_global_cnn_explains_a_phantom_slice(phantom: ImageVolume) -> None:
    detector = create_detector("global-cnn")
    network = detector.model.network  # type: ignore[attr-defined]
    state = {k: v.clone() for k, v in network.state_dict().items()}
    logits = slice_logits(detector.model, phantom.pixels)  # type: ignore[attr-defined]
    assert explainable(detector) and explainable(detector, phantom)
    for method, options in (("gradcam", {}), ("occlusion", {"mask_size": 32, "stride": 32})):
        heat = saliency(detector, phantom, 1, method, **options)  # type: ignore[arg-type]
        _check_map(heat, phantom.shape[1:])
    # batch norms stayed in eval mode and learnt nothing: the detector scores as before
    assert all(torch.equal(v, state[k]) for k, v in network.state_dict().items())
    assert np.array_equal(slice_logits(detector.model, phantom.pixels), logits)  # type: ignore[attr-defined]


def test_vit_gradcam_uses_the_patch_grid_and_matches_the_network(phantom: ImageVolume) -> None:
    pytest.importorskip("einops")
    prep = dataclasses.replace(ARCHITECTURES["global-vit"], size=SIZE)
    spec = default_network("global-vit", prep)
    spec["kwargs"].update(hidden_size=48, mlp_dim=96, num_layers=2, num_heads=2)
    torch.manual_seed(0)
    model = _model("global-vit", build_network(spec), prep)
    model.network_spec = spec
    detector = GlobalVitDetector(model)

    from medforensics.explain import cam

    with torch.no_grad():
        subject = cam._subject(detector, phantom, 1)
        assert subject is not None and subject.cam_layer == "patch_grid"
        expected = slice_logits(model, phantom.pixels[1])
        assert float(subject.score(subject.inputs)) == pytest.approx(float(expected[0]), abs=1e-5)
    gradcam = saliency(detector, phantom, 1, "gradcam")
    _check_map(gradcam, phantom.shape[1:])
    assert gradcam.std() > 0.01  # the 4×4 patch grid, not a constant
    occlusion = saliency(detector, phantom, 1, "occlusion", mask_size=32, stride=16)
    assert occlusion.shape == phantom.shape[1:] and np.isfinite(occlusion).all()


def test_ct_local_maps_peak_on_its_most_suspicious_cell_in_the_tampered_region(
    phantom: ImageVolume,
) -> None:
    tampered = simulate(phantom, "splice", seed=1)
    volume = dataclasses.replace(phantom, pixels=tampered.pixels)
    detector = create_detector("ct-local")
    detection = detector.detect(volume)
    assert detection.anomaly_map is not None
    z = int(np.argmax(tampered.truth.mask.sum(axis=(1, 2))))
    cells = detection.anomaly_map[z]
    peak_cell = np.unravel_index(int(np.argmax(cells)), cells.shape)
    centre = tuple(int(v) * STRIDE + STRIDE // 2 for v in peak_cell)
    inside = tampered.truth.mask[z]
    assert inside[centre]  # the detector itself found the splice

    # Grad-CAM of a 1x1-conv head is the cell-logit map: highest at the detector's peak cell
    gradcam = saliency(detector, volume, z, "gradcam")
    _check_map(gradcam, phantom.shape[1:])
    assert gradcam[centre] > 0.8
    assert inside[_peak(gradcam)]
    # cells outside the body are not scored: at most bilinear spill-over from a body cell
    body = np.repeat(np.repeat(cells > 0, STRIDE, 0), STRIDE, 1)
    assert gradcam[~body].max() < 0.5

    stride = 8
    occlusion = saliency(detector, volume, z, "occlusion", mask_size=16, stride=stride)
    _check_map(occlusion, phantom.shape[1:])
    assert occlusion[centre] > 0.5  # squares over the peak cell drop the score most
    # a plateau's first pixel is its top-left corner: up to a stride from its middle
    assert ndimage.distance_transform_edt(~inside)[_peak(occlusion)] <= stride
    assert occlusion[inside].sum() > 3 * inside.mean() * occlusion.sum()


def test_auto_is_explained_through_the_network_it_routes_to(phantom: ImageVolume) -> None:
    auto = create_detector("auto")
    local = create_detector("ct-local")
    assert explainable(auto)
    assert np.array_equal(saliency(auto, phantom, 0), saliency(local, phantom, 0))
    mr = dataclasses.replace(phantom, modality="MR")
    assert not explainable(auto, mr)
    with pytest.raises(NotExplainable, match=r"'auto' uses 'noise-residual'"):
        saliency(auto, mr, 0)
    with pytest.raises(NotExplainable, match="trained on CT only"):
        saliency(local, mr, 0, "occlusion")


@pytest.mark.parametrize("name", ["noise-residual", "classical"])
def test_statistical_detectors_are_not_explainable(name: str, phantom: ImageVolume) -> None:
    detector = create_detector(name)
    assert not explainable(detector)
    for method in ("gradcam", "occlusion"):
        with pytest.raises(NotExplainable, match=rf"{name!r} has no network.*global-cnn"):
            saliency(detector, phantom, 0, method)  # type: ignore[arg-type]


def test_blank_or_tiny_slices_give_an_empty_map() -> None:
    detector = create_detector("ct-local")
    tiny = ImageVolume("tiny", "image", "CT", np.zeros((1, 16, 16), dtype=np.float32))
    assert not saliency(detector, tiny, 0).any()
    air = ImageVolume("air", "image", "CT", np.full((1, 64, 64), -1000.0, dtype=np.float32))
    assert not saliency(detector, air, 0, "occlusion").any()


def test_bad_arguments_are_refused(
    region_detector: GlobalCnnDetector, noise_volume: ImageVolume
) -> None:
    with pytest.raises(IndexError, match="slices 0 to 2"):
        saliency(region_detector, noise_volume, 3)
    with pytest.raises(ValueError, match="unknown saliency method"):
        saliency(region_detector, noise_volume, 0, "lime")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="mask_size must be a positive integer"):
        saliency(region_detector, noise_volume, 0, "occlusion", mask_size=0)
