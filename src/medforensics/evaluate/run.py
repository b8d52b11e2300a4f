"""The evaluation engine behind ``medforensics evaluate``: score a detector, measure it honestly.

1. Cases: authentic scans cut into chunks, each with simulator-tampered twins (``make_cases``
   with a seed that training never uses), or the scans of a CT-GAN-layout dataset.
2. Every case goes through the detector's ``detect``; its calibrated score, its anomaly map
   (slice scores) and its top-3 findings (localisation) are kept.
3. Metrics at three levels: slice (a slice is manipulated when the attack changed a voxel in it),
   case (a chunk or scan) and study (max over a study's cases: an authentic study, and one
   tampered variant per twin in which that twin replaces its authentic chunk). Bootstrap
   intervals resample whole patients.
4. Protocol extras: per-scanner figures and leave-one-scanner-out retraining, leave-one-attack-out
   retraining, and robustness to every laundering operation (in ``protocols``, imported lazily
   by ``run_evaluation``: ``protocols`` imports this module, never the other way round).

Nothing here writes files; ``protocols`` writes retrained checkpoints and
``report.write_report`` does the rest.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from medforensics.__about__ import __version__
from medforensics.detect.base import Detector
from medforensics.detect.types import Detection
from medforensics.evaluate.bootstrap import bootstrap_ci
from medforensics.evaluate.ctgan_format import (
    CtganFormatError,
    CtganLocation,
    find_ctgan_scan,
    read_ctgan_labels,
)
from medforensics.evaluate.localisation import GroundTruthRegion, localise
from medforensics.evaluate.metrics import compute_metrics, roc_auc
from medforensics.io.types import ImageVolume
from medforensics.train.cases import TrainCase, make_cases, patient_key, scanner_key
from medforensics.train.pipeline import CHUNK, DEFAULT_ATTACKS, localisation_hit

PROTOCOLS = ("in-dist", "cross-scanner", "leave-one-attack-out", "robustness")
#: evaluation cases come from seeds training never draws (it uses seed * 1000 + round, and 999)
CASE_SEED_OFFSET = 7_919_000
HIT_PX, HIT_SLICES, TOP_K = 20.0, 2, 3
MAX_EXAMPLES = 4
#: CT-GAN edits a 32 mm cube; without a mask, slices and pixels within 16 mm count as touched
CTGAN_HALF_SIZE_MM = 16.0
#: fewer patients than this and the bootstrap resamples cases instead (and says so)
MIN_BOOTSTRAP_PATIENTS = 5
#: describe() keys safe to publish (cards may list patient IDs; those never leave this module)
_MODEL_KEYS = ("name", "checkpoint", "model", "detector", "software_version", "created", "tile")

Progress = Callable[[str], None]


class EvaluationError(ValueError):
    """No usable data, an unknown model, or options that cannot work together (for people)."""


@dataclass
class EvaluationConfig:
    """What ``run_evaluation`` does; recorded in metrics.json (``settings``, ``command``)."""

    data: list[Path]
    model: str
    protocol: str = "in-dist"
    seed: int = 0
    per_chunk: int = 1
    chunk: int = CHUNK
    attacks: tuple[str, ...] = DEFAULT_ATTACKS
    launder_ops: tuple[str, ...] = ()  # empty: every op in LAUNDER_OPS
    ctgan_labels: Path | None = None
    retrain: bool = False
    rounds: int = 2
    steps: int = 100
    width: int = 32
    bootstrap: int = 1000
    models_dir: Path | None = None  # where --retrain writes its checkpoints
    command: str = ""


@dataclass
class EvalCase:
    """A case plus where it came from: its authentic chunk (``source``) and study."""

    case: TrainCase
    source: int
    study: str


@dataclass
class CaseScore:
    """What the detector said about one case, reduced to what the metrics need."""

    score: float
    label: int
    attack: str | None
    patient: str
    scanner: str
    study: str
    source: int
    slice_scores: np.ndarray
    slice_labels: np.ndarray
    hit: bool | None = None
    distance: float | None = None
    inconclusive: bool = False


@dataclass
class Example:
    """One slice of a tampered case, for a heatmap overlay."""

    title: str
    image: np.ndarray
    anomaly: np.ndarray
    stride: int
    mask: np.ndarray | None
    peaks: list[tuple[int, int]]
    modality: str


@dataclass
class EvaluationResult:
    """metrics.json content plus the arrays the plots need."""

    metrics: dict[str, Any]
    curves: dict[str, tuple[np.ndarray, np.ndarray]]
    examples: list[Example] = field(default_factory=list)


# ----------------------------------------------------------------------------- model and data


def load_model(spec: str) -> tuple[Detector, dict[str, Any]]:
    """A registered detector name, or a ``.pt`` checkpoint of ``ct-local``; plus its description."""
    from medforensics.detect.registry import create_detector

    try:
        if spec.endswith(".pt"):
            path = Path(spec)
            if not path.is_file():
                raise EvaluationError(f"{path}: model checkpoint not found")
            from medforensics.detect.local import LocalDetector
            from medforensics.utils.hashing import file_sha256

            detector: Detector = LocalDetector(checkpoint=path)
            sha: str | None = file_sha256(path)
        else:
            detector, sha = create_detector(spec), None
    except EvaluationError:
        raise
    except KeyError as exc:
        raise EvaluationError(str(exc.args[0]) + "; or give a .pt checkpoint") from None
    except (OSError, ImportError, ValueError, RuntimeError) as exc:
        raise EvaluationError(f"{spec}: cannot load the model: {exc}") from None
    described = detector.describe()
    info = {key: described[key] for key in _MODEL_KEYS if key in described}
    info["name"] = detector.name
    info["spec"] = spec
    info["checkpoint_sha256"] = sha or described.get("checkpoint_sha256")
    point = getattr(detector, "operating_point", None)
    info["threshold"] = float(point.manipulated_at) if point is not None else 0.5
    info["threshold_source"] = "model operating point" if point is not None else "default 0.5"
    return detector, info


def load_volumes(paths: Sequence[Path], skipped: list[str]) -> list[ImageVolume]:
    """Every readable image under ``paths``; unreadable ones are added to ``skipped``."""
    from medforensics.io.loader import Skipped, load_paths

    volumes = []
    for item in load_paths([str(p) for p in paths]):
        if isinstance(item, ImageVolume):
            volumes.append(item)
        elif not isinstance(item, Skipped):
            skipped.append(str(item))
    return volumes


def _study(volume: ImageVolume) -> str:
    return volume.study_uid or f"{volume.input}#{volume.series_uid or ''}"


def simulated_cases(
    volumes: Sequence[ImageVolume],
    attacks: Sequence[str],
    seed: int,
    chunk: int,
    per_chunk: int,
    errors: dict[str, int],
) -> list[EvalCase]:
    """Authentic chunks and their tampered twins, each twin tied to its authentic chunk."""
    current = {"study": ""}

    def feed() -> Iterator[ImageVolume]:
        for volume in volumes:  # make_cases is lazy: its cases belong to the volume fed last
            current["study"] = _study(volume)
            yield volume

    out: list[EvalCase] = []
    source = -1
    for case in make_cases(feed(), attacks, seed, chunk, per_chunk, errors=errors):
        source += case.attack is None
        out.append(EvalCase(case, source, current["study"]))
    return out


def ctgan_cases(
    labels_csv: Path, roots: Sequence[Path], skipped: list[str], summary: dict[str, Any]
) -> list[EvalCase]:
    """One case per labelled scan of a CT-GAN-layout dataset (labels_exp*.csv + scan folders)."""
    match = re.search(r"exp(\d+)", labels_csv.name, re.IGNORECASE)
    experiment = int(match.group(1)) if match else 1
    try:
        locations = read_ctgan_labels(labels_csv, experiment)
    except (OSError, CtganFormatError) as exc:
        raise EvaluationError(f"{labels_csv}: cannot read the CT-GAN labels: {exc}") from None
    by_scan: dict[str, list[CtganLocation]] = {}
    for location in locations:
        by_scan.setdefault(location.uuid, []).append(location)
    search = [root for root in [*roots, labels_csv.parent] if root.is_dir()]
    summary.update(
        labels_file=labels_csv.name,
        experiment=experiment,
        locations=dict(Counter(location.type for location in locations)),
        outside_scan=0,
    )
    out: list[EvalCase] = []
    for index, (uuid, located) in enumerate(by_scan.items()):
        scan = next((p for r in search if (p := find_ctgan_scan(r, uuid, experiment))), None)
        if scan is None:
            where = ", ".join(str(r) for r in search)
            skipped.append(f"{uuid}: scan not found (looked in {where})")
            continue
        volumes = load_volumes([scan], skipped)
        if not volumes:
            continue
        volume = volumes[0]
        tampered = [loc for loc in located if loc.manipulated]
        mask, centre = None, None
        if tampered:
            mask, outside = _ctgan_mask(volume, tampered)
            summary["outside_scan"] += outside
            centre = (tampered[0].slice, tampered[0].y, tampered[0].x)
        attack = "+".join(sorted({str(loc.attack) for loc in tampered})) or None
        case = TrainCase(
            volume, mask, attack, patient_key(volume), scanner_key(volume), centre=centre
        )
        out.append(EvalCase(case, index, f"ctgan:{uuid}"))
    return out


def _ctgan_mask(volume: ImageVolume, located: Sequence[CtganLocation]) -> tuple[np.ndarray, int]:
    """A box of ±16 mm around each tampered location (the dataset gives centres, not masks)."""
    n, rows, cols = volume.shape
    dz, dr = (s if math.isfinite(s) and s > 0 else 1.0 for s in volume.spacing[:2])
    half_slices = max(1, round(CTGAN_HALF_SIZE_MM / dz))
    half_px = max(4, round(CTGAN_HALF_SIZE_MM / dr))
    mask = np.zeros(volume.shape, dtype=bool)
    outside = 0
    for loc in located:
        if not (0 <= loc.slice < n and 0 <= loc.y < rows and 0 <= loc.x < cols):
            outside += 1
            continue
        z0, z1 = max(0, loc.slice - half_slices), loc.slice + half_slices + 1
        y0, x0 = max(0, loc.y - half_px), max(0, loc.x - half_px)
        mask[z0:z1, y0 : loc.y + half_px + 1, x0 : loc.x + half_px + 1] = True
    return mask, outside


# ----------------------------------------------------------------------------- scoring


def score_cases(
    detector: Detector,
    cases: Sequence[EvalCase],
    progress: Progress,
    examples: list[Example] | None = None,
    transform: Callable[[int, TrainCase], ImageVolume] | None = None,
    failures: Counter[str] | None = None,
) -> list[CaseScore]:
    """Detect every case (optionally transformed first); failures are counted, not fatal."""
    out = []
    for index, item in enumerate(cases):
        case = item.case
        volume = transform(index, case) if transform is not None else case.volume
        if not detector.supports(volume):
            if failures is not None:
                failures[f"modality {volume.modality} not supported by {detector.name}"] += 1
            continue
        try:
            detection = detector.detect(volume)
        except Exception as exc:  # one case the detector cannot handle must not end the run
            if failures is not None:
                failures[f"{type(exc).__name__}: {exc}"[:160]] += 1
            continue
        if not math.isfinite(detection.score):
            if failures is not None:
                failures["the detector gave no finite score"] += 1
            continue
        out.append(_case_score(detection, item))
        if examples is not None and len(examples) < MAX_EXAMPLES:
            _maybe_example(examples, detection, case, volume)
        if (index + 1) % 50 == 0:
            progress(f"scored {index + 1}/{len(cases)} cases")
    return out


def _case_score(detection: Detection, item: EvalCase) -> CaseScore:
    case = item.case
    n = case.volume.shape[0]
    amap = detection.anomaly_map
    if amap is not None and amap.ndim == 3 and amap.shape[0] == n and amap.size:
        slice_scores = amap.reshape(n, -1).max(axis=1).astype(np.float64)
    else:
        slice_scores = np.full(n, detection.score, dtype=np.float64)
    slice_labels = np.zeros(n, dtype=np.int8)
    if case.mask is not None:
        slice_labels[np.any(case.mask.reshape(n, -1), axis=1)] = 1
    hit = distance = None
    if case.mask is not None and case.centre is not None:
        local = [f for f in detection.findings if f.kind == "local"]
        peaks = [(f.slice, f.row, f.col) for f in sorted(local, key=lambda f: -f.score)[:TOP_K]]
        hit = localisation_hit(peaks, case.mask, HIT_PX, HIT_SLICES) if peaks else False
        truth = GroundTruthRegion(*case.centre)
        found = localise(local, truth, top_k=TOP_K, max_px=HIT_PX, max_slices=HIT_SLICES)
        distance = None if math.isnan(found.distance) else found.distance
    return CaseScore(
        score=float(detection.score),
        label=case.label,
        attack=case.attack,
        patient=case.patient,
        scanner=case.scanner,
        study=item.study,
        source=item.source,
        slice_scores=np.clip(slice_scores, 0.0, 1.0),
        slice_labels=slice_labels,
        hit=hit,
        distance=distance,
        inconclusive=detection.verdict == "inconclusive" and not detection.findings,
    )


def _maybe_example(
    examples: list[Example], detection: Detection, case: TrainCase, volume: ImageVolume
) -> None:
    amap = detection.anomaly_map
    if case.mask is None or amap is None or amap.ndim != 3 or amap.shape[0] != volume.shape[0]:
        return
    if any(e.title.startswith(f"{case.attack} ") for e in examples):
        return  # one example per attack
    z = int(np.argmax(case.mask.reshape(volume.shape[0], -1).sum(axis=1)))
    peaks = [
        (f.row, f.col) for f in detection.findings[:TOP_K] if f.kind == "local" and f.slice == z
    ]
    examples.append(
        Example(
            title=f"{case.attack} (score {detection.score:.2f}, slice {z})",
            image=np.array(volume.pixels[z], dtype=np.float32),
            anomaly=np.array(amap[z], dtype=np.float32),
            stride=int(detection.map_stride),
            mask=np.array(case.mask[z]),
            peaks=peaks,
            modality=volume.modality,
        )
    )


# ----------------------------------------------------------------------------- metrics


def level_arrays(scored: Sequence[CaseScore], level: str) -> tuple[np.ndarray, ...]:
    """``(labels, scores, patients)`` at ``slice``, ``case`` or ``study`` level."""
    if level == "case":
        return (
            np.array([s.label for s in scored], dtype=np.int8),
            np.array([s.score for s in scored]),
            np.array([s.patient for s in scored], dtype=object),
        )
    if level == "slice":
        return (
            np.concatenate([s.slice_labels for s in scored]).astype(np.int8),
            np.concatenate([s.slice_scores for s in scored]),
            np.concatenate([[s.patient] * len(s.slice_scores) for s in scored]).astype(object),
        )
    authentic: dict[str, list[CaseScore]] = {}
    for s in scored:
        if s.label == 0:
            authentic.setdefault(s.study, []).append(s)
    rows = [(0, max(a.score for a in group), group[0].patient) for group in authentic.values()]
    for s in scored:
        if s.label == 1:  # the twin replaces its own authentic chunk in an otherwise intact study
            others = [a.score for a in authentic.get(s.study, []) if a.source != s.source]
            rows.append((1, max([s.score, *others]), s.patient))
    labels, scores, patients = zip(*rows, strict=True) if rows else ((), (), ())
    return (
        np.array(labels, dtype=np.int8),
        np.array(scores, dtype=np.float64),
        np.array(patients, dtype=object),
    )


def level_metrics(
    labels: np.ndarray,
    scores: np.ndarray,
    patients: np.ndarray,
    threshold: float,
    rng: np.random.Generator,
    n_boot: int,
) -> dict[str, Any]:
    """All headline metrics of one level, with a bootstrap AUC interval."""
    report = compute_metrics(labels, scores, threshold=threshold)
    out = report.to_dict()
    at = out.pop("at_threshold")
    assert isinstance(at, dict)
    out.update({key: at[key] for key in ("threshold", "accuracy", "precision", "recall", "f1")})
    out["specificity"] = at["specificity"]
    out["confusion"] = at["confusion"]
    out["roc_auc_ci"] = _auc_ci(labels, scores, patients, rng, n_boot)
    return out


def _auc_ci(
    labels: np.ndarray, scores: np.ndarray, patients: np.ndarray, rng: np.random.Generator, n: int
) -> dict[str, Any] | None:
    if n < 1 or len(set(labels.tolist())) < 2:
        return None
    n_patients = len(set(patients.tolist()))
    groups = patients if n_patients >= MIN_BOOTSTRAP_PATIENTS else None
    ci = bootstrap_ci(roc_auc, labels, scores, n, rng=rng, groups=groups)
    notes = list(ci.warnings)
    if groups is None:
        notes.append(
            f"only {n_patients} patient(s): cases were resampled, so the interval may be too narrow"
        )
    return {
        "low": ci.low,
        "high": ci.high,
        "confidence": ci.confidence,
        "resampled": "patients" if groups is not None else "cases",
        "n_resamples": ci.n_resamples,
        "n_valid": ci.n_valid,
        "notes": notes,
    }


def _rate(values: Sequence[bool]) -> float | None:
    return float(np.mean(values)) if len(values) else None


def breakdown(
    scored: Sequence[CaseScore],
    threshold: float,
    rng: np.random.Generator,
    n_boot: int,
    by: str,
) -> dict[str, dict[str, Any]]:
    """Figures per attack (authentic vs that attack) or per scanner (that scanner's cases)."""
    out = {}
    if by == "attack":
        groups = {s.attack for s in scored if s.attack}
        pick: Callable[[CaseScore, str], bool] = lambda s, g: s.attack in (None, g)  # noqa: E731
    else:
        groups = {s.scanner for s in scored}
        pick = lambda s, g: s.scanner == g  # noqa: E731
    for group in sorted(groups):
        part = [s for s in scored if pick(s, group)]
        labels, scores, patients = level_arrays(part, "case")
        report = compute_metrics(labels, scores, threshold=threshold)
        flagged = scores >= threshold
        hits = [s.hit for s in part if s.hit is not None]
        out[group] = {
            "authentic_cases": report.n_authentic,
            "manipulated_cases": report.n_manipulated,
            "patients": len(set(patients.tolist())),
            "roc_auc": report.roc_auc,
            "roc_auc_ci": _auc_ci(labels, scores, patients, rng, n_boot),
            "average_precision": report.average_precision,
            "tpr_at_fpr": report.tpr_at_fpr,
            "tpr_at_threshold": _rate(flagged[labels == 1].tolist()),
            "fpr_at_threshold": _rate(flagged[labels == 0].tolist()),
            "localisation_hit_rate": _rate(hits),
        }
    return out


def localisation_summary(scored: Sequence[CaseScore]) -> dict[str, Any]:
    """Top-3 hit rate (20 px, 2 slices of the mask) and mean distance to the centre (voxels)."""
    tampered = [s for s in scored if s.hit is not None]
    distances = [s.distance for s in tampered if s.distance is not None]
    return {
        "cases": len(tampered),
        "hit_rate": _rate([bool(s.hit) for s in tampered]),
        "mean_distance_voxels": float(np.mean(distances)) if distances else None,
        "cases_without_findings": len(tampered) - len(distances),
        "rule": f"a hit is one of the top {TOP_K} local findings within {HIT_PX:g} px in-plane "
        f"and {HIT_SLICES} slices of a voxel the attack changed",
    }


def summarise_scores(
    scored: Sequence[CaseScore], threshold: float, seed: int, n_boot: int
) -> tuple[dict[str, Any], dict[str, tuple[np.ndarray, np.ndarray]]]:
    """Levels, per-attack, per-scanner and localisation figures; plus the arrays for curves."""
    rng = np.random.default_rng([seed, 4242])
    levels, curves = {}, {}
    for level in ("slice", "case", "study"):
        labels, scores, patients = level_arrays(scored, level)
        levels[level] = level_metrics(labels, scores, patients, threshold, rng, n_boot)
        curves[level] = (labels, scores)
    figures = {
        "levels": levels,
        "localisation": localisation_summary(scored),
        "per_attack": breakdown(scored, threshold, rng, n_boot, "attack"),
        "per_scanner": breakdown(scored, threshold, rng, n_boot, "scanner"),
    }
    return figures, curves


# ----------------------------------------------------------------------------- the run


def data_summary(
    volumes: Sequence[ImageVolume], scored: Sequence[CaseScore], cases: Sequence[EvalCase]
) -> dict[str, Any]:
    """Counts per scanner, per patient (never the patient keys) and per attack."""
    scanners: dict[str, dict[str, Any]] = {}
    patients_of: dict[str, set[str]] = {}
    for item in cases:
        patients_of.setdefault(item.case.scanner, set()).add(item.case.patient)
    for scanner, patients in sorted(patients_of.items()):
        mine = [s for s in scored if s.scanner == scanner]
        scanners[scanner] = {
            "patients": len(patients),
            "authentic_cases": sum(s.label == 0 for s in mine),
            "manipulated_cases": sum(s.label == 1 for s in mine),
        }
    per_patient = Counter(s.patient for s in scored)
    return {
        "volumes": len(volumes),
        "slices": int(sum(v.shape[0] for v in volumes)),
        "modalities": dict(Counter(v.modality for v in volumes)),
        "patients": len({c.case.patient for c in cases}),
        "cases_per_patient": sorted(per_patient.values(), reverse=True),
        "scanners": scanners,
        "cases": {
            "built": len(cases),
            "scored": len(scored),
            "authentic": sum(s.label == 0 for s in scored),
            "manipulated": sum(s.label == 1 for s in scored),
            "by_attack": dict(sorted(Counter(s.attack for s in scored if s.attack).items())),
            "inconclusive": sum(s.inconclusive for s in scored),
        },
    }


def run_evaluation(config: EvaluationConfig, progress: Progress | None = None) -> EvaluationResult:
    """Load, build cases, score, measure; raise ``EvaluationError`` when nothing is usable."""
    say = progress or (lambda message: None)
    if config.protocol not in PROTOCOLS:
        raise EvaluationError(f"unknown protocol {config.protocol!r}; use {', '.join(PROTOCOLS)}")
    if config.retrain and config.protocol not in ("cross-scanner", "leave-one-attack-out"):
        raise EvaluationError("--retrain works with cross-scanner or leave-one-attack-out only")
    if config.retrain and config.ctgan_labels is not None:
        raise EvaluationError("--retrain trains on authentic DATA; it cannot use --ctgan-labels")
    if not config.data and config.ctgan_labels is None:
        raise EvaluationError("give DATA (folders or files of authentic scans)")
    from medforensics.tamper.registry import list_attacks

    unknown = sorted(set(config.attacks) - set(list_attacks()))
    if unknown or not config.attacks:
        known = ", ".join(list_attacks())
        raise EvaluationError(
            f"unknown attack(s) {', '.join(unknown) or '(none given)'}; known: {known}"
        )
    detector, model = load_model(config.model)
    skipped: list[str] = []
    errors: dict[str, int] = {}
    case_seed = CASE_SEED_OFFSET + config.seed
    ctgan: dict[str, Any] = {}
    if config.ctgan_labels is not None:
        if not config.ctgan_labels.is_file():
            raise EvaluationError(f"{config.ctgan_labels}: CT-GAN labels file not found")
        cases = ctgan_cases(config.ctgan_labels, config.data, skipped, ctgan)
        volumes = [c.case.volume for c in cases]
    else:
        volumes = load_volumes(config.data, skipped)
        say(f"{len(volumes)} series/images loaded; building cases")
        cases = simulated_cases(
            volumes, config.attacks, case_seed, config.chunk, config.per_chunk, errors
        )
    where = config.ctgan_labels or ", ".join(str(p) for p in config.data)
    if not cases:
        listed = "; ".join(skipped[:5]) or "nothing readable was found"
        raise EvaluationError(f"no usable scans in {where}: {listed}")
    say(f"scoring {len(cases)} cases with {detector.name}")
    failures: Counter[str] = Counter()
    examples: list[Example] = []
    scored = score_cases(detector, cases, say, examples, failures=failures)
    labels = {s.label for s in scored}
    if labels != {0, 1}:
        missing = "tampered" if 1 not in labels else "authentic"
        reasons = "; ".join([*failures, *errors][:5]) or "see the attack errors"
        raise EvaluationError(f"no {missing} case could be scored from {where}: {reasons}")
    threshold = float(model["threshold"])
    figures, curves = summarise_scores(scored, threshold, config.seed, config.bootstrap)
    data = data_summary(volumes, scored, cases)
    data.update(
        source="ctgan" if ctgan else "simulated",
        inputs=len(config.data),  # the paths themselves are in the command line only
        skipped=skipped,
        unscored=dict(failures),
        attack_errors=errors,
        case_seed=case_seed,
        chunk_slices=config.chunk,
        per_chunk=config.per_chunk,
    )
    if ctgan:
        data["ctgan"] = ctgan
    from medforensics.evaluate.protocols import (
        cross_scanner_retrain,
        leave_one_attack_out_retrain,
        robustness,
    )

    models = config.models_dir or Path("models")
    protocol: dict[str, Any] = {"name": config.protocol, "retrain": config.retrain, "notes": []}
    if config.protocol == "robustness":
        from medforensics.tamper.launder import LAUNDER_OPS

        ops = list(config.launder_ops or LAUNDER_OPS)
        unknown = [op for op in ops if op not in LAUNDER_OPS]
        if unknown:
            known = ", ".join(LAUNDER_OPS)
            raise EvaluationError(f"unknown laundering op(s) {', '.join(unknown)}; known: {known}")
        protocol.update(robustness(detector, cases, ops, threshold, config.seed, say))
    elif config.protocol == "cross-scanner":
        if config.retrain:
            protocol.update(
                cross_scanner_retrain(volumes, scored, cases, config, models, threshold, say)
            )
        else:
            protocol["notes"].append(
                "per-scanner figures of the given model; with --retrain, a ct-local model is "
                "trained on the other scanners for each scanner and tested on it"
            )
    elif config.protocol == "leave-one-attack-out":
        if config.retrain:
            protocol.update(leave_one_attack_out_retrain(volumes, config, models, say))
        else:
            protocol["notes"].append(
                "not a leave-one-attack-out result: the model was not retrained, so these are "
                "per-attack figures only (the model may have seen every attack in training); "
                "use --retrain to train without each attack in turn"
            )
    metrics = {
        "schema": "medforensics-evaluate/1",
        "command": config.command,
        "software_version": __version__,
        "seed": config.seed,
        "settings": {
            key: value if not isinstance(value, Path) else str(value)
            for key, value in dataclasses.asdict(config).items()
            if key not in ("data", "command", "models_dir")
        },
        "protocol": protocol,
        "model": model,
        "data": data,
        **figures,
    }
    return EvaluationResult(metrics=metrics, curves=curves, examples=examples)
