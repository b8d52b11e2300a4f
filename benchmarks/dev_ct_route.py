"""Which second model should ``auto`` run beside ``ct-local`` on CT: ``classical`` or ``copy-move``?

Both routes are scored on the same cases, with everything else in ``auto`` equal (metadata,
resampling, noise-hole and lossy-compression checks):

* the held-out single slices (GE x 7 patients, LIDC: 43), each as acquired, with two blunt
  edits (a lesion blurred away in soft tissue, OpenCV Telea in-painting in lung, as in
  ``dev_noise_hole.py``), a raw 40x40 copy-move, and one twin per simulator attack (``inject``,
  ``remove``, ``copy-move``, ``splice``, ``inpaint``; seed 9);
* authentic CT from other scanners and body parts: pydicom's ``J2K_pixelrep_mismatch.dcm`` (a
  Toshiba head CT), ``CT_small.dcm`` and the two CTs of ``pydicom_data_samples``.

Note that the shipped ``classical`` model was fitted with 70 % of the GE patients, so its
figures on these slices are partly in-sample; ``copy-move`` needs no training.

    python benchmarks/dev_ct_route.py [--data ../shared/data]
"""

from __future__ import annotations

import dataclasses
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import pydicom.data

sys.path.insert(0, str(Path(__file__).parent))

import dev_noise_hole as shared
from devdata import data_parser, parse_data_args

from medforensics.detect.auto import AutoDetector
from medforensics.evaluate import roc_auc
from medforensics.io.types import ImageVolume
from medforensics.tamper.registry import simulate

ROUTES = {
    "ct-local + classical": ("ct-local", "classical"),
    "ct-local + copy-move": ("ct-local", "copy-move"),
}
SIMULATED = ("inject", "remove", "copy-move", "splice", "inpaint")


def cases(data: Path, seed: int) -> list[tuple[str, ImageVolume]]:
    units = shared._ct([str(data / s) for s in shared.HELD_OUT if (data / s).exists()])
    rng = np.random.default_rng(seed)
    out: list[tuple[str, ImageVolume]] = []
    for k, volume in enumerate(units):
        image = volume.pixels[0].astype(np.float32)

        def edited(pixels: np.ndarray, v: ImageVolume = volume) -> ImageVolume:
            return dataclasses.replace(v, pixels=pixels[None].astype(np.float32))

        out.append(("authentic", volume))
        cy, cx = shared._site(image, rng, lung=False)
        ly, lx = shared._site(image, rng, lung=True)
        out.append(("blurred away", edited(shared.blur_away(image, cy, cx))))
        out.append(("Telea, lung", edited(shared.telea(image, ly, lx))))
        sy, sx = shared._site(image, rng, lung=False)
        copied = image.copy()
        copied[cy - 20 : cy + 20, cx - 20 : cx + 20] = image[sy - 20 : sy + 20, sx - 20 : sx + 20]
        out.append(("raw copy 40x40", edited(copied)))
        for attack in SIMULATED:
            result = simulate(volume, attack, seed=[9, k])
            out.append((f"sim. {attack}", dataclasses.replace(volume, pixels=result.pixels)))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = data_parser(__doc__)
    parser.add_argument("--seed", type=int, default=5)
    args = parse_data_args(parser, argv)
    if args is None:
        return 2
    pyd = Path(pydicom.data.get_testdata_file("CT_small.dcm")).parent
    others = shared._ct(
        [
            str(pyd / "J2K_pixelrep_mismatch.dcm"),
            str(pyd / "CT_small.dcm"),
            str(args.data / "pydicom_data_samples"),
        ]
    )
    scored = cases(args.data, args.seed)
    print(f"{len(scored)} cases on {sum(1 for c in scored if c[0] == 'authentic')} held-out slices")
    for name, route in ROUTES.items():
        started = time.time()
        auto = AutoDetector(routes={"CT": route})
        scores: dict[str, list[float]] = defaultdict(list)
        verdicts: dict[str, Counter[str]] = defaultdict(Counter)
        for label, volume in scored:
            detection = auto.detect(volume)
            scores[label].append(detection.score)
            verdicts[label][detection.verdict] += 1
        print(f"\n== {name} ({time.time() - started:.0f} s)")
        print(f"   {'cases':16s} {'AUC':>6s}  authentic / inconclusive / manipulated")
        negative = scores["authentic"]
        simulated: list[float] = []
        for label, values in scores.items():
            v = verdicts[label]
            counts = f"{v['authentic']:3d} / {v['inconclusive']:3d} / {v['manipulated']:3d}"
            if label == "authentic":
                print(f"   {label:16s} {'':>6s}  {counts}")
                continue
            if label.startswith("sim."):
                simulated += values
            labels = np.r_[np.zeros(len(negative)), np.ones(len(values))]
            auc = roc_auc(labels, np.r_[negative, values])
            print(f"   {label:16s} {auc:6.3f}  {counts}")
        labels = np.r_[np.zeros(len(negative)), np.ones(len(simulated))]
        print(f"   {'all simulated':16s} {roc_auc(labels, np.r_[negative, simulated]):6.3f}")
        for volume in others:
            detection = auto.detect(volume)
            where = Path(volume.input).name or volume.input
            print(
                f"   other authentic CT {where:28s} {detection.verdict:12s} {detection.score:.3f}"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
