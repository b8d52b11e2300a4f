"""Authentic CT after lossy compression: how often does ``auto`` call it manipulated?

Archives keep older studies lossy-compressed (JPEG 2000 irreversible, JPEG baseline), at ratios
from 5:1 to several hundred to one. Compression smooths and quantises the noise the pixel models
read, so an authentic image must not become ``manipulated`` just because it was compressed.

For every authentic CT unit at hand (held-out GE single slices, LIDC, pydicom's CTs, 8-slice
chunks of the Philips and Siemens series), this prints ``auto``'s verdicts as acquired and after
lossy JPEG 2000 at several ratios and lossy JPEG at several qualities (``tamper.launder``), and
the header hint ``auto`` is given (``LossyImageCompression`` = 01, as a compliant writer sets it)
or not.

With ``--xr-mr`` it scores radiographs and MR instead (pydicom's CR, six Colin27 T1 slices,
dicom3tools' MR example and four ``samples`` phantom radiographs at 1024²), as acquired and as
8-bit JPEG at quality 95 to 60 (windowed to the 0.1-99.9 percentiles), the way they reach an
insurer or a telemedicine platform.

With ``--evidence`` it prints, per variant, how many units ``ct-local`` and ``classical`` flag on
their own, the ``compression`` evidence (wavelet level, block grid) and ``noise-hole``'s radii.

    python benchmarks/dev_lossy.py [--data ../shared/data] [--xr-mr | --evidence]
"""

from __future__ import annotations

import dataclasses
import time
from collections import Counter
from pathlib import Path

import numpy as np
from devdata import data_parser, parse_data_args

from medforensics.detect.registry import create_detector
from medforensics.io.loader import load_paths
from medforensics.io.types import ImageVolume
from medforensics.tamper.launder import apply_laundering, sample_laundering

FOLDERS = (
    "covid19_ny_sbu_ct_slices",
    "lidc_idri_0002_single_slice",
    "pydicom_data_samples",
    "cptac_lscc_C3N-00247_siemens",
    "lung_pet_ct_dx_A0001_philips",
)
#: (name, laundering op, fixed parameters)
VARIANTS: tuple[tuple[str, str | None, dict[str, object]], ...] = (
    ("as acquired", None, {}),
    ("JPEG 2000 10:1", "jpeg2000", {"rate": 10.0}),
    ("JPEG 2000 20:1", "jpeg2000", {"rate": 20.0}),
    ("JPEG 2000 50:1", "jpeg2000", {"rate": 50.0}),
    ("JPEG 2000 150:1", "jpeg2000", {"rate": 150.0}),
    ("JPEG 2000 340:1", "jpeg2000", {"rate": 340.0}),
    ("JPEG q90", "jpeg", {"quality": 90}),
    ("JPEG q75", "jpeg", {"quality": 75}),
)
CHUNK = 8


def units(data: Path) -> list[ImageVolume]:
    """Single slices as they are, series as ``CHUNK``-slice chunks (two per series)."""
    out: list[ImageVolume] = []
    paths = [str(data / f) for f in FOLDERS if (data / f).exists()]
    for volume in load_paths(paths):
        if not isinstance(volume, ImageVolume) or volume.modality != "CT":
            continue
        if volume.shape[0] < CHUNK:
            out.append(volume)
            continue
        for start in (0, volume.shape[0] // 2):
            part = slice(start, start + CHUNK)
            positions = volume.positions[part] if volume.positions is not None else None
            out.append(
                dataclasses.replace(
                    volume,
                    pixels=np.ascontiguousarray(volume.pixels[part]),
                    slices=volume.slices[part] if volume.slices else volume.slices,
                    positions=positions,
                )
            )
    return out


def variant(
    volume: ImageVolume, op: str | None, fixed: dict[str, object], seed: int
) -> ImageVolume:
    if op is None:
        return volume
    rng = np.random.default_rng(seed)
    steps = [{**step, **fixed} for step in sample_laundering(volume, [op], rng)]
    pixels = apply_laundering(volume.pixels, volume, steps, rng)
    return dataclasses.replace(volume, pixels=pixels)


def declared_lossy(volume: ImageVolume) -> ImageVolume:
    """``volume`` as a compliant writer would label it after lossy compression."""
    return dataclasses.replace(
        volume, attributes={**volume.attributes, "LossyImageCompression": "01"}
    )


XR_MR_QUALITIES = (95, 85, 75, 60)
DICOM3TOOLS_MR = Path("/usr/share/doc/dicom3tools/examples/0051.dcm")


def xr_mr_units(data: Path) -> list[ImageVolume]:
    """Radiographs and MR slices as single 2D images."""

    paths = [str(data / "pydicom_data_samples" / "RG1_UNCR.dcm")]
    paths.append(str(data / "brain_mri_t1_colin27_mricron_data"))
    if DICOM3TOOLS_MR.is_file():
        paths.append(str(DICOM3TOOLS_MR))
    out: list[ImageVolume] = []
    for volume in load_paths(paths):
        if not isinstance(volume, ImageVolume):
            continue
        if volume.shape[0] == 1:
            out.append(volume)
            continue
        for z in range(40, 150, 20):
            out.append(
                dataclasses.replace(
                    volume,
                    pixels=np.ascontiguousarray(volume.pixels[z : z + 1]),
                    slices=volume.slices[z : z + 1] if volume.slices else volume.slices,
                    positions=None,
                )
            )
    out.extend(phantom_radiograph(1024, seed, f"radiograph phantom {seed}") for seed in range(4))
    return out


def phantom_radiograph(size: int, seed: int, name: str) -> ImageVolume:
    """A ``samples`` phantom radiograph (``size``², seeded), as a PNG would be read."""
    from medforensics.samples import radiograph_phantom

    pixels = radiograph_phantom(size, np.random.default_rng(seed)).astype(np.float32)
    return ImageVolume(
        input=name,
        kind="image",
        modality="OT",
        pixels=pixels.reshape(1, *pixels.shape[-2:]),
        spacing=(1.0, 0.15, 0.15),
    )


def as_jpeg(volume: ImageVolume, quality: int) -> ImageVolume:
    """``volume`` exported to 8-bit JPEG (0.1-99.9 percentile window) and read back."""
    import io

    from PIL import Image

    planes = []
    for plane in volume.pixels:
        low, high = np.percentile(plane, [0.1, 99.9])
        gray = np.clip((plane - low) / max(high - low, 1e-6) * 255, 0, 255).round()
        buffer = io.BytesIO()
        Image.fromarray(gray.astype(np.uint8)).save(buffer, format="JPEG", quality=quality)
        planes.append(np.asarray(Image.open(buffer), dtype=np.float32))
    return dataclasses.replace(volume, pixels=np.stack(planes))


def xr_mr(data: Path) -> None:
    detector = create_detector("auto")
    cases = xr_mr_units(data)
    print(f"{len(cases)} radiographs and MR slices; auto's verdicts")
    print(f"{'variant':18s} authentic / inconclusive / manipulated")
    for quality in (None, *XR_MR_QUALITIES):
        counts: Counter[str] = Counter()
        for volume in cases:
            changed = volume if quality is None else as_jpeg(volume, quality)
            counts[detector.detect(changed).verdict] += 1
        name = "as acquired" if quality is None else f"JPEG q{quality}"
        print(
            f"{name:18s} {counts['authentic']:9d} / {counts['inconclusive']:12d} / "
            f"{counts['manipulated']:11d}",
            flush=True,
        )


def evidence(data: Path) -> None:
    """Per variant, what the pieces see: the texture models' own verdicts (``manipulated``
    counts), the wavelet level and the JPEG block grid of ``compression``, and ``noise-hole``'s
    largest radius (header as acquired)."""
    from medforensics.detect.compression import WAVELET_FLOOR, wavelet_level
    from medforensics.detect.noise_hole import NoiseHoleDetector
    from medforensics.detect.resampling import interpolation_trace

    models = {name: create_detector(name) for name in ("ct-local", "classical")}
    holes = NoiseHoleDetector()
    cases = units(data)
    print(f"{len(cases)} authentic CT units; per variant:")
    print(
        f"{'variant':18s} {'ct-local':>8s} {'classical':>9s}  {'wavelet level':>15s} "
        f"{'<= floor':>8s} {'block grid':>10s} {'hole max':>8s} {'>= 8 px':>7s}"
    )
    for name, op, fixed in VARIANTS:
        flagged = Counter[str]()
        levels, grids, radii = [], 0, []
        for k, volume in enumerate(cases):
            changed = variant(volume, op, fixed, seed=k)
            for model_name, model in models.items():
                flagged[model_name] += model.detect(changed).verdict == "manipulated"
            level = wavelet_level(changed)
            levels.append(np.nan if level is None else level)
            trace = interpolation_trace(changed)
            grids += bool(trace is not None and trace.block_grid)
            radii.append(max((h.radius for h in holes.holes(changed)), default=0.0))
        lv = np.array(levels)
        print(
            f"{name:18s} {flagged['ct-local']:8d} {flagged['classical']:9d}  "
            f"{np.nanmin(lv):6.2f} - {np.nanmax(lv):6.2f} {int((lv <= WAVELET_FLOOR).sum()):8d} "
            f"{grids:10d} {max(radii):8.1f} {sum(r >= 8 for r in radii):7d}",
            flush=True,
        )


def main(argv: list[str] | None = None) -> int:
    parser = data_parser(__doc__)
    parser.add_argument("--xr-mr", action="store_true", help="radiographs and MR instead of CT")
    parser.add_argument(
        "--evidence", action="store_true", help="per-model flags and the compression evidence"
    )
    args = parse_data_args(parser, argv)
    if args is None:
        return 2
    started = time.time()
    if args.xr_mr or args.evidence:
        (xr_mr if args.xr_mr else evidence)(args.data)
        print(f"{time.time() - started:.0f} s")
        return 0
    detector = create_detector("auto")
    cases = units(args.data)
    print(
        f"{len(cases)} authentic CT units; auto's verdicts (authentic / inconclusive / manipulated)"
    )
    print(f"{'variant':18s} {'header says lossless':>26s} {'header says lossy (01)':>26s}")
    for name, op, fixed in VARIANTS:
        counts: dict[bool, Counter[str]] = {False: Counter(), True: Counter()}
        for k, volume in enumerate(cases):
            changed = variant(volume, op, fixed, seed=k)
            for labelled in (False, True) if op else (False,):
                scored = declared_lossy(changed) if labelled else changed
                counts[labelled][detector.detect(scored).verdict] += 1

        def cell(c: Counter[str]) -> str:
            if not c:
                return "-"
            return f"{c['authentic']:3d} / {c['inconclusive']:3d} / {c['manipulated']:3d}"

        print(f"{name:18s} {cell(counts[False]):>26s} {cell(counts[True]):>26s}", flush=True)
    print(f"{time.time() - started:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
