"""Global (whole-slice) detectors on real CT: leave-one-generator-out, cross-scanner, baseline.

python benchmarks/dev_global.py [--data ../shared/data] [--threads 2] [--seed 0] [--ship]

1. Authentic CT from two scanners (Siemens cptac_lscc, Philips lung_pet_ct_dx) is split by
   slice position into train / validation / test blocks (60/20/20 %, contiguous, the same
   positions for both Philips reconstructions, so no anatomy is shared between blocks).
2. One generator of each family (``vae-deconv``, ``vae-resize``) is trained on the train block.
3. ``global-cnn`` and ``global-vit`` learn authentic vs ``vae-deconv`` slices; a logistic
   regression on ``detect.spectral`` features is the feature baseline. Slice-level ROC-AUC is
   printed on the test block for each family (``vae-resize`` never seen) and on GE slices
   (covid19_ny_sbu_ct_slices, a scanner never seen), for each family; then on the GE set with
   the unseen family after laundering every slice (smooth, resample, jpeg, noise).
4. ``densenet121-slice`` (the seed project's approach) learns the simulator's local attacks
   (inject, remove, copy-move, splice, inpaint) for a few epochs; its series-level AUC on GE
   slices with the same attacks, and its throughput at 256² input, are printed.

With ``--ship`` the trained global-cnn is written to src/medforensics/models/ with a model card
holding the figures printed here.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
TRAIN_FOLDERS = ("cptac_lscc_C3N-00247_siemens", "lung_pet_ct_dx_A0001_philips")
GE_FOLDER = "covid19_ny_sbu_ct_slices"
#: citations as the folders' SOURCE.md give them
ATTRIBUTION = {
    "cptac_lscc_C3N-00247_siemens": (
        "National Cancer Institute CPTAC, Lung Squamous Cell Carcinoma Collection (CPTAC-LSCC), "
        "The Cancer Imaging Archive, DOI 10.7937/K9/TCIA.2018.6EMUB5L2 (SOURCE.md: check before "
        "publishing); Clark K et al., The Cancer Imaging Archive (TCIA), J Digit Imaging "
        "2013;26(6):1045-1057, doi:10.1007/s10278-013-9622-7; copied from GitHub "
        "deep-learning-with-pytorch/dlwpt-code"
    ),
    GE_FOLDER: (
        "TCIA collection COVID-19-NY-SBU (CC BY 4.0); copied from GitHub "
        "SaltyJoke/Image-Registration data-sample/"
    ),
    "lung_pet_ct_dx_A0001_philips": (
        "TCIA Lung-PET-CT-Dx, https://doi.org/10.7937/TCIA.2020.NNC20461; copied from GitHub "
        "huyenbui117/lung_CT"
    ),
}
SEEN, UNSEEN = "vae-deconv", "vae-resize"
LOCAL_ATTACKS = ("inject", "remove", "copy-move", "splice", "inpaint")
CHUNK = 5
SPECTRAL_WINDOW = (-1024.0, 1024.0)
#: laundering applied to a whole test set (authentic and fake alike) for the robustness rows
LAUNDER = ("smooth", "resample", "jpeg", "noise")


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def load_folder(data: Path, folder: str) -> list:
    from medforensics.io.loader import load_paths
    from medforensics.io.types import ImageVolume

    volumes = [v for v in load_paths([data / folder]) if isinstance(v, ImageVolume)]
    if not volumes:
        sys.exit(f"{data / folder}: no images found; pass --data pointing at shared/data")
    return sorted(volumes, key=lambda v: (v.series_uid or "", v.input, v.slices[0].source_file))


def source_card(data: Path, folder: str) -> str:
    """``folder: title. Licence: ... Attribution: ...``, title and licence from SOURCE.md."""
    lines = (data / folder / "SOURCE.md").read_text().splitlines()
    title = lines[0].lstrip("# ").strip()
    licence = next((ln.split(":**", 1)[1].strip() for ln in lines if "**License:**" in ln), "")
    licence = licence.split(". ")[0].rstrip(".")
    return f"{folder}: {title}. Licence: {licence}. Attribution: {ATTRIBUTION[folder]}"


def split_blocks(volume) -> dict[str, object]:
    from medforensics.train.cases import slab

    n = volume.shape[0]
    a, b = round(0.6 * n), round(0.8 * n)
    return {"train": slab(volume, 0, a), "val": slab(volume, a, b), "test": slab(volume, b, n)}


def authentic_cases(volumes: Sequence) -> list:
    from medforensics.train.cases import TrainCase, chunks, patient_key, scanner_key

    return [
        TrainCase(piece, None, None, patient_key(v), scanner_key(v))
        for v in volumes
        for piece in chunks(v, CHUNK)
    ]


def synthetic_twins(
    cases: Sequence, generator, seed: int, copies: int = 1
) -> tuple[list, list[bool]]:
    """Every slice of each authentic case replaced by ``generator`` (mode/noise drawn per twin).

    Returns the twins and, for each, whether its fake slices got matched noise.
    """
    from medforensics.tamper import simulate
    from medforensics.train.cases import TrainCase

    twins, matched = [], []
    for index, case in enumerate(cases):
        for copy in range(copies):
            result = simulate(
                case.volume,
                "synthetic",
                seed=[seed, index, copy],
                options={"generator": generator},
                slices=list(range(case.volume.shape[0])),
            )
            matched.append(bool(result.truth.params["match_noise"]))
            twins.append(
                TrainCase(
                    result.as_volume(case.volume),
                    result.truth.mask,
                    "synthetic",
                    case.patient,
                    case.scanner,
                    centre=result.truth.centre,
                )
            )
    return twins, matched


def _is_original(case) -> bool:
    return "ORIGINAL" in case.volume.attributes.get("ImageType", "")


def laundered(cases: Sequence, op: str, seed: int) -> list:
    """``cases`` with laundering ``op`` (parameters drawn per case) applied to every slice."""
    from medforensics.tamper.launder import apply_laundering, sample_laundering
    from medforensics.train.cases import on_value_grid

    rng = np.random.default_rng(seed)
    out = []
    for case in cases:
        steps = sample_laundering(case.volume, [op], rng)
        pixels = apply_laundering(case.volume.pixels, case.volume, steps, rng)
        volume = dataclasses.replace(case.volume, pixels=on_value_grid(case.volume.pixels, pixels))
        out.append(dataclasses.replace(case, volume=volume, launder=(op,)))
    return out


def slice_table(cases: Sequence) -> tuple[np.ndarray, np.ndarray]:
    """All slices of ``cases`` stacked, and their labels (replaced = 1)."""
    pixels = np.concatenate([c.volume.pixels for c in cases])
    labels = np.concatenate(
        [
            c.mask.any(axis=(1, 2)).astype(int)
            if c.mask is not None
            else np.zeros(c.volume.shape[0], int)
            for c in cases
        ]
    )
    return pixels, labels


def spectral_model(train: Sequence) -> Callable[[np.ndarray], np.ndarray]:
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from medforensics.detect.spectral import feature_matrix

    pixels, labels = slice_table(train)
    model = make_pipeline(StandardScaler(), LogisticRegression(C=0.3, max_iter=5000))
    model.fit(feature_matrix(pixels, SPECTRAL_WINDOW), labels)
    return lambda stack: model.decision_function(feature_matrix(stack, SPECTRAL_WINDOW))


def throughput(detector, threads: int, slices: int = 32) -> float:
    import torch

    from medforensics.detect.global_net import slice_logits
    from medforensics.samples import chest_ct_phantom

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    stack = np.rint(chest_ct_phantom(slices, 512, np.random.default_rng(0)))
    # a full warm-up pass (a new thread pool is slow at first), then the best of three: other
    # jobs on a shared machine only ever make a pass slower
    slice_logits(detector.model, stack, detector.batch_size)
    best = np.inf
    for _ in range(3):
        start = time.perf_counter()
        slice_logits(detector.model, stack, detector.batch_size)
        best = min(best, time.perf_counter() - start)
    torch.set_num_threads(before)
    return slices / best


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", type=Path, default=HERE.parent.parent / "shared" / "data")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--generator-steps", type=int, default=600)
    parser.add_argument("--cnn-epochs", type=int, default=8)
    parser.add_argument("--vit-epochs", type=int, default=6)
    parser.add_argument("--densenet-epochs", type=int, default=3)
    parser.add_argument("--densenet-slices", type=int, default=96, help="slices per epoch")
    parser.add_argument("--ship", action="store_true", help="write models/global-cnn.{pt,json}")
    parser.add_argument("--out", type=Path, default=HERE / "out" / "dev_global")
    args = parser.parse_args()

    import torch

    from medforensics.detect.global_net import slice_logits, train_global
    from medforensics.evaluate import roc_auc
    from medforensics.tamper.synthetic import train_generator
    from medforensics.train.cases import make_cases

    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    log(
        f"torch {torch.__version__}, {args.threads} threads, seed {args.seed}, "
        f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores"
    )

    # 1. data and splits ---------------------------------------------------------------------
    blocks: dict[str, list] = {"train": [], "val": [], "test": []}
    for folder in TRAIN_FOLDERS:
        for volume in load_folder(args.data, folder):
            for name, block in split_blocks(volume).items():
                blocks[name].append(block)
    ge_volumes = load_folder(args.data, GE_FOLDER)
    authentic = {name: authentic_cases(vols) for name, vols in blocks.items()}
    ge_authentic = authentic_cases(ge_volumes)
    log(
        "authentic slices: "
        + ", ".join(f"{k} {sum(c.volume.shape[0] for c in v)}" for k, v in authentic.items())
        + f", GE {len(ge_authentic)}"
    )

    # 2. one generator per family, trained on the train block only ----------------------------
    train_slices = np.concatenate([v.pixels for v in blocks["train"]])
    generators = {}
    for family in (SEEN, UNSEEN):
        tic = time.perf_counter()
        generators[family] = train_generator(
            train_slices, family, seed=args.seed, steps=args.generator_steps
        )
        generators[family].save(args.out / f"generator-{family}.pt")
        log(f"generator {family}: {time.perf_counter() - tic:.0f} s")

    # 3. synthetic twins ---------------------------------------------------------------------
    tic = time.perf_counter()
    train = authentic["train"] + synthetic_twins(authentic["train"], generators[SEEN], 1, 2)[0]
    val = authentic["val"] + synthetic_twins(authentic["val"], generators[SEEN], 2)[0]
    tests: dict[str, tuple[list, tuple[list, list[bool]]]] = {}
    for family in (SEEN, UNSEEN):
        tag = "seen" if family == SEEN else "unseen"
        tests[f"Siemens+Philips test block, {family} ({tag})"] = (
            authentic["test"],
            synthetic_twins(authentic["test"], generators[family], 3),
        )
        tests[f"GE LightSpeed VCT, {family} ({tag})"] = (
            ge_authentic,
            synthetic_twins(ge_authentic, generators[family], 4),
        )
    log(f"synthetic twins made in {time.perf_counter() - tic:.0f} s")

    # 4. detectors ---------------------------------------------------------------------------
    scorers: dict[str, Callable[[np.ndarray], np.ndarray]] = {}
    trained = {}
    card_common = {
        "trained_on": [source_card(args.data, f) for f in TRAIN_FOLDERS],
        "evaluated_on": [source_card(args.data, GE_FOLDER)],
        "fakes": f"{SEEN} generator (tamper.synthetic) trained on the same train block",
    }
    for arch, epochs in (("global-cnn", args.cnn_epochs), ("global-vit", args.vit_epochs)):
        if epochs <= 0:
            continue
        tic = time.perf_counter()
        try:
            result = train_global(
                arch,
                train,
                val,
                seed=args.seed,
                epochs=epochs,
                batch_size=16,
                lr=2e-3,
                card=dict(card_common),
                progress=log,
            )
        except ImportError as exc:  # global-vit needs einops
            log(f"{arch} skipped: {exc}")
            continue
        trained[arch] = result
        detector = result.detector
        scorers[arch] = lambda stack, d=detector: slice_logits(d.model, stack, 16)
        log(f"{arch} trained in {time.perf_counter() - tic:.0f} s; validation {result.validation}")
    tic = time.perf_counter()
    scorers["spectral-logreg"] = spectral_model(train)
    log(f"spectral-logreg fitted in {time.perf_counter() - tic:.0f} s")

    # 5. slice-level AUC per family -----------------------------------------------------------
    figures: dict[str, dict[str, float]] = {}
    noise_figures: dict[str, dict[str, float]] = {}
    print("\nslice-level ROC-AUC, authentic slices vs generated slices")
    header = f"{'test set':<48}{'n_auth':>7}{'n_fake':>7}" + "".join(f"{n:>17}" for n in scorers)
    print(header)
    for name, (real, (fake, fake_matched)) in tests.items():
        pixels, labels = slice_table(list(real) + list(fake))
        matched = np.concatenate(
            [np.zeros(sum(c.volume.shape[0] for c in real), bool)]
            + [np.full(c.volume.shape[0], m) for c, m in zip(fake, fake_matched, strict=True)]
        )
        row = f"{name:<48}{int((labels == 0).sum()):>7}{int(labels.sum()):>7}"
        figures[name], noise_figures[name] = {}, {}
        for scorer_name, scorer in scorers.items():
            scores = scorer(pixels)
            auc = roc_auc(labels, scores)
            keep = (labels == 0) | matched
            noise_figures[name][scorer_name] = round(roc_auc(labels[keep], scores[keep]), 4)
            figures[name][scorer_name] = round(auc, 4)
            row += f"{auc:>17.3f}"
        print(row, flush=True)
    print("\n  the same, noise-matched fakes only (match_noise=True)")
    for name, by_scorer in noise_figures.items():
        print(f"  {name:<46}" + "".join(f"{v:>17.3f}" for v in by_scorer.values()))
    operating: dict[str, dict[str, float]] = {}
    print("\n  GE single slices at each detector's 1 % FPR operating point (from validation)")
    real, (fake, _) = tests[f"GE LightSpeed VCT, {UNSEEN} (unseen)"]
    groups = {
        "authentic axial (ORIGINAL)": [c for c in real if _is_original(c)],
        "authentic coronal/sagittal reformats (DERIVED)": [c for c in real if not _is_original(c)],
        f"{UNSEEN} fakes": fake,
    }
    for arch, result in trained.items():
        operating[arch] = {
            "threshold": round(result.detector.model.operating_point.manipulated_at, 4)
        }
        for kind, group in groups.items():
            verdicts = [result.detector.detect(c.volume).verdict for c in group]
            share = float(np.mean([v == "manipulated" for v in verdicts]))
            operating[arch][f"flagged: {kind} (n={len(group)})"] = round(share, 4)
            print(f"  {arch:<12} flags {share:7.1%} of {kind} (n={len(group)})")
    laundered_figures: dict[str, dict[str, float]] = {}
    ge_unseen = f"GE LightSpeed VCT, {UNSEEN} (unseen)"
    print(f"\n  {ge_unseen}, every slice (authentic and fake) laundered afterwards")
    real, (fake, _) = tests[ge_unseen]
    for op in LAUNDER:
        pixels, labels = slice_table(laundered(list(real) + list(fake), op, args.seed))
        laundered_figures[op] = {
            scorer_name: round(roc_auc(labels, scorer(pixels)), 4)
            for scorer_name, scorer in scorers.items()
        }
        print(f"  {op:<46}" + "".join(f"{v:>17.3f}" for v in laundered_figures[op].values()))

    # 6. densenet121-slice on local attacks ---------------------------------------------------
    tic = time.perf_counter()
    local_train = list(make_cases(blocks["train"], LOCAL_ATTACKS, seed=args.seed, chunk=CHUNK))
    local_val = list(make_cases(blocks["val"], LOCAL_ATTACKS, seed=args.seed + 1, chunk=CHUNK))
    ge_local = list(make_cases(ge_volumes, LOCAL_ATTACKS, seed=args.seed + 2, chunk=CHUNK))
    log(
        f"local-attack cases: train {len(local_train)}, val {len(local_val)}, GE {len(ge_local)} "
        f"({time.perf_counter() - tic:.0f} s)"
    )
    tic = time.perf_counter()
    baseline = train_global(
        "densenet121-slice",
        local_train,
        local_val,
        seed=args.seed,
        epochs=args.densenet_epochs,
        batch_size=8,
        slices_per_epoch=args.densenet_slices,
        progress=log,
    )
    log(f"densenet121-slice trained in {time.perf_counter() - tic:.0f} s")
    series_scores = [baseline.detector.detect(c.volume).score for c in ge_local]
    series_labels = [c.label for c in ge_local]
    ge_local_auc = roc_auc(series_labels, series_scores)
    per_attack = {
        attack: roc_auc(
            [c.label for c in ge_local if c.attack in (None, attack)],
            [s for s, c in zip(series_scores, ge_local, strict=True) if c.attack in (None, attack)],
        )
        for attack in LOCAL_ATTACKS
    }
    log(f"load average {os.getloadavg()[0]:.1f} before the throughput runs")
    rate2 = throughput(baseline.detector, 2)
    rate1 = throughput(baseline.detector, 1)
    print("\ndensenet121-slice (seed approach) trained on local attacks, GE series-level ROC-AUC")
    print(
        f"  all attacks: {ge_local_auc:.3f} ({sum(series_labels)} tampered, "
        f"{len(series_labels) - sum(series_labels)} authentic series)"
    )
    print("  " + ", ".join(f"{a} {v:.3f}" for a, v in per_attack.items()))
    print(
        f"  throughput at 256² input from 512² slices: {rate2:.1f} slices/s (2 threads), "
        f"{rate1:.1f} slices/s (1 thread)"
    )
    rates = {}
    for arch, result in trained.items():
        rates[arch] = round(throughput(result.detector, 2), 1)
        print(f"  {arch} throughput: {rates[arch]:.1f} slices/s (2 threads)")
    baseline.detector.save(args.out / "densenet121-slice")

    # 7. ship global-cnn ---------------------------------------------------------------------
    if args.ship and "global-cnn" in trained:
        detector = trained["global-cnn"].detector
        detector.model.card.update(
            {
                "detector": "global-cnn",
                "command": "python benchmarks/dev_global.py --ship "
                + " ".join(
                    f"--{k.replace('_', '-')} {v}"
                    for k, v in vars(args).items()
                    if k not in ("ship", "data", "out")
                ),
                "held_out_slice_auc": figures,
                "held_out_slice_auc_noise_matched": noise_figures,
                "held_out_slice_auc_laundered": {"test_set": ge_unseen, **laundered_figures},
                "ge_at_operating_point": operating.get("global-cnn"),
                "throughput_slices_per_s_2_threads": rates.get("global-cnn"),
                "preprocessing": (
                    "HU window [-1024, 1024] -> [-1, 1], bilinear resize to 256x256 (antialiased), "
                    "second channel: 3x3 high-pass residual x20 clipped to +-4"
                ),
                "intended_use": (
                    "research and triage: flags CT slices that look generated as a whole (fully "
                    "synthetic slices), to be read with the local detectors. Not for clinical or "
                    "legal decisions."
                ),
                "limits": [
                    "trained on 2 patients (Siemens B70f, Philips L and B kernels) and on fakes "
                    "from one small VAE family (vae-deconv)",
                    "the fakes are easy: 128-px decoder output upsampled to 512 px lacks the "
                    "fine texture of acquired CT, so held-out AUCs of 1.0 say nothing about "
                    "GAN or diffusion fakes made at full resolution",
                    "trained on axial slices only: coronal and sagittal reformats (MPR) are out "
                    "of distribution and often flagged (see ge_at_operating_point)",
                    "calibration and the 1 % FPR operating point come from a validation block "
                    "of 5 authentic and 5 fake volumes of the same 2 patients: recheck the "
                    "false-positive rate on authentic scans of each new scanner or site",
                    "blind to local edits (lesion injection/removal, splices): use the local "
                    "detectors",
                ],
            }
        )
        path = detector.save(HERE.parent / "src" / "medforensics" / "models" / "global-cnn")
        size = path.stat().st_size
        log(f"shipped {path} ({size / 1e6:.2f} MB) and {path.with_suffix('.json').name}")
    log(f"total {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
