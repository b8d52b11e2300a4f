"""Radiographs with a patch spliced in from a less (or more) noisy image: does ``noise-residual``
see it, and does its radiograph mode leave authentic images alone?

``noise-residual`` compares each 16 px tile's noise level with its 5x5 neighbours. A patch
several tiles wide then hides its inner tiles among each other (the demo's spliced radiograph:
2.39, ``authentic``). In a single projection image it now compares each tile only with tiles of
like brightness (a radiograph's noise follows its signal), both the 5x5 neighbours and the ring
of tiles 3 to 6 away (``noise_residual.RING_INNER``), and keeps the larger statistic. This
prints, for both ways (5x5 / radiograph mode), the statistic and ``noise-residual``'s verdicts:

1. authentic radiographs: pydicom's CR (``RG1_UNCR``, and its lossy JPEG 2000 copy), pynetdicom's
   Elekta portal image of a steel ball (when installed), eight ``samples`` phantom radiographs at
   512² and 1024², and benign processing of each (8-bit windowed PNG, 0.75x and 0.5x resize,
   8-bit JPEG q95);
2. the same images with a square patch spliced in (feathered 4 px): the patch keeps the image's
   structure but its noise is scaled by 0.4, 0.6 or 1.6 (a donor from another detector, dose or
   processing), 64 to 160 px at 512², two places each; a disk of radius 16 or 32 px (at 512²)
   in-painted by OpenCV (Telea), two places each; and the simulator's ``splice`` attack;
3. with ``--ct``: authentic CT units (``dev_lossy.units``), both ways, for comparison (CT gets
   the 5x5 comparison).

    python benchmarks/dev_xr_splice.py [--data ../shared/data] [--ct]
"""

from __future__ import annotations

import dataclasses
import io
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
from PIL import Image
from scipy import ndimage

sys.path.insert(0, str(Path(__file__).parent))
from dev_lossy import phantom_radiograph
from devdata import data_parser, parse_data_args

from medforensics.detect import masks
from medforensics.detect.noise_residual import NoiseResidualDetector, tile_statistics
from medforensics.io.loader import load_paths
from medforensics.io.types import ImageVolume

NOISE_SCALES = (0.4, 0.6, 1.6)
#: patch sides at 512² (scaled with the image)
SIDES = (64, 112, 160)
PLACES = 2


def authentic(data: Path) -> list[ImageVolume]:
    paths = [str(data / "pydicom_data_samples" / name) for name in ("RG1_UNCR.dcm", "RG1_J2KI.dcm")]
    portal = _pynetdicom_file("RTImageStorage.dcm")
    if portal is not None:
        paths.append(str(portal))
    out = [v for v in load_paths(paths) if isinstance(v, ImageVolume)]
    out.extend(
        phantom_radiograph(size, seed, f"phantom {size} #{seed}")
        for size in (512, 1024)
        for seed in range(4)
    )
    return out


def _pynetdicom_file(name: str) -> Path | None:
    """A file of pynetdicom's test data (an Elekta portal image of a steel ball), if installed."""
    import importlib.util

    spec = importlib.util.find_spec("pynetdicom")
    if spec is None or spec.origin is None:
        return None
    path = Path(spec.origin).parent / "tests" / "dicom_files" / name
    return path if path.is_file() else None


def _replace(volume: ImageVolume, plane: np.ndarray, name: str) -> ImageVolume:
    return dataclasses.replace(
        volume, input=f"{volume.input} {name}", pixels=plane[None].astype(np.float32)
    )


def _eight_bit(plane: np.ndarray) -> np.ndarray:
    low, high = np.percentile(plane, [0.1, 99.9])
    return np.clip((plane - low) / max(high - low, 1e-6) * 255, 0, 255).round()


def benign(volume: ImageVolume) -> Iterator[ImageVolume]:
    plane = volume.pixels[0]
    yield volume
    yield _replace(volume, _eight_bit(plane), "8-bit PNG")
    for factor in (0.75, 0.5):
        h, w = plane.shape
        size = (round(w * factor), round(h * factor))
        resized = cv2.resize(plane, size, interpolation=cv2.INTER_AREA)
        yield _replace(volume, np.rint(resized), f"resized {factor}x")
    buffer = io.BytesIO()
    Image.fromarray(_eight_bit(plane).astype(np.uint8)).save(buffer, format="JPEG", quality=95)
    yield _replace(volume, np.asarray(Image.open(buffer), dtype=np.float32), "JPEG q95")


def spliced(volume: ImageVolume, scale: float, side: int, rng: np.random.Generator) -> ImageVolume:
    """A ``side`` px square whose noise is scaled by ``scale``, feathered over 4 px."""
    plane = volume.pixels[0].astype(np.float64)
    body = masks.foreground_mask(plane, volume.modality)
    body[: side // 2 + 4] = body[-side // 2 - 4 :] = False
    body[:, : side // 2 + 4] = body[:, -side // 2 - 4 :] = False
    # the centre deep inside the body where there is room, else as deep as there is
    depth = ndimage.distance_transform_edt(body)
    ys, xs = np.nonzero(depth >= min(side // 2 + 4, depth.max()))
    pick = int(rng.integers(len(ys)))
    top, left = ys[pick] - side // 2, xs[pick] - side // 2
    box = (slice(top, top + side), slice(left, left + side))
    smooth = ndimage.gaussian_filter(plane, 2.0)
    donor = smooth + (plane - smooth) * scale
    ramp = np.minimum(np.arange(side), np.arange(side)[::-1]) / 4.0
    alpha = np.clip(np.minimum.outer(ramp, ramp), 0.0, 1.0)
    out = plane.copy()
    out[box] = alpha * donor[box] + (1 - alpha) * plane[box]
    return _replace(volume, np.rint(out), f"spliced x{scale} {side}px")


def inpainted(volume: ImageVolume, radius: int, rng: np.random.Generator) -> ImageVolume:
    """A disk of ``radius`` px in-painted by OpenCV (Telea), as an attacker removing a lesion
    without synthesising noise would."""
    plane = volume.pixels[0].astype(np.float64)
    depth = ndimage.distance_transform_edt(masks.foreground_mask(plane, volume.modality))
    ys, xs = np.nonzero(depth >= min(radius + 8, depth.max()))
    pick = int(rng.integers(len(ys)))
    yy, xx = np.ogrid[: plane.shape[0], : plane.shape[1]]
    disk = ((yy - ys[pick]) ** 2 + (xx - xs[pick]) ** 2 <= radius**2).astype(np.uint8)
    low, high = float(plane.min()), float(plane.max())
    scaled = np.rint((plane - low) / max(high - low, 1e-6) * 65535).astype(np.uint16)
    filled = cv2.inpaint(scaled, disk, 5, cv2.INPAINT_TELEA).astype(np.float64)
    out = np.where(disk > 0, filled / 65535 * (high - low) + low, plane)
    return _replace(volume, np.rint(out), f"in-painted r{radius}")


def statistics(volume: ImageVolume) -> tuple[float, float]:
    """(every tile against its 5x5 neighbours, radiograph mode)."""
    return (
        tile_statistics(volume, 16, radiograph=False).normalised_max,
        tile_statistics(volume, 16, radiograph=True).normalised_max,
    )


def auc(positives: list[float], negatives: list[float]) -> float:
    pos, neg = np.asarray(positives), np.asarray(negatives)
    pos, neg = pos[~np.isnan(pos)], neg[~np.isnan(neg)]
    if not len(pos) or not len(neg):
        return float("nan")
    greater = (pos[:, None] > neg[None, :]).mean()
    ties = (pos[:, None] == neg[None, :]).mean()
    return float(greater + ties / 2)


def main(argv: list[str] | None = None) -> int:
    parser = data_parser(__doc__)
    parser.add_argument("--ct", action="store_true", help="also authentic CT, with and without")
    args = parse_data_args(parser, argv)
    if args is None:
        return 2
    started = time.time()
    detector = NoiseResidualDetector()
    threshold = detector.calibration.inverse(detector.operating_point.manipulated_at)
    print(f"noise-residual says manipulated above statistic {threshold:.2f}")
    print("statistic: every tile against its 5x5 neighbours (what every image got before) /")
    print("radiograph mode (neighbours and the ring of 3-6 tiles, of like brightness only)")
    print(f"{'image':44s} {'5x5':>6s} {'radio':>6s}")

    bases = authentic(args.data)
    clean: list[tuple[float, float]] = []
    for base in bases:
        for volume in benign(base):
            pair = statistics(volume)
            clean.append(pair)
            print(f"{volume.input[-44:]:44s} {pair[0]:6.2f} {pair[1]:6.2f}", flush=True)
    rows = np.array(clean)
    print(
        f"\n1. authentic radiographs and benign copies: {len(rows)}; largest statistic "
        f"{np.nanmax(rows[:, 0]):.2f} / {np.nanmax(rows[:, 1]):.2f}; manipulated "
        f"{int((rows[:, 0] > threshold).sum())} / {int((rows[:, 1] > threshold).sum())}"
    )

    print("\n2. spliced patches (5x5 / radiograph mode)")
    print(f"{'edit':24s} {'cases':>5s} {'flagged':>13s} {'AUC':>13s}")
    rng = np.random.default_rng(0)
    sources = [b for b in bases if "J2KI" not in b.input and "RTImage" not in b.input]
    for scale in NOISE_SCALES:
        for side in SIDES:
            found = []
            for base in sources:
                scaled = side * max(base.shape[1:]) // 512
                for _ in range(PLACES):
                    found.append(statistics(spliced(base, scale, scaled, rng)))
            _print_edit(f"noise x{scale}, {side} px", found, clean, threshold)
    for radius in (16, 32):
        found = []
        for base in sources:
            scaled = radius * max(base.shape[1:]) // 512
            for _ in range(PLACES):
                found.append(statistics(inpainted(base, scaled, rng)))
        _print_edit(f"Telea in-painting r{radius}", found, clean, threshold)
    from medforensics.tamper.registry import create_attack

    attack = create_attack("splice")
    found = [
        statistics(attack(base, np.random.default_rng(seed)).as_volume(base))
        for base in sources
        for seed in range(3)
    ]
    _print_edit("simulator splice", found, clean, threshold)

    if args.ct:
        from dev_lossy import units

        ct = np.array([statistics(unit) for unit in units(args.data)])
        print(
            f"\n3. authentic CT units: {len(ct)}; largest statistic {np.nanmax(ct[:, 0]):.2f} / "
            f"{np.nanmax(ct[:, 1]):.2f}; manipulated {int((ct[:, 0] > threshold).sum())} / "
            f"{int((ct[:, 1] > threshold).sum())}"
        )
    print(f"\n{time.time() - started:.0f} s")
    return 0


def _print_edit(
    name: str, found: list[tuple[float, float]], clean: list[tuple[float, float]], threshold: float
) -> None:
    edits, negatives = np.array(found), np.array(clean)
    flagged = [int((edits[:, k] > threshold).sum()) for k in (0, 1)]
    aucs = [auc(list(edits[:, k]), list(negatives[:, k])) for k in (0, 1)]
    print(
        f"{name:24s} {len(edits):5d} {flagged[0]:6d} / {flagged[1]:4d} "
        f"{aucs[0]:6.3f} / {aucs[1]:.3f}",
        flush=True,
    )


if __name__ == "__main__":
    raise SystemExit(main())
