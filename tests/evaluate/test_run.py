"""The evaluation engine and report writer, end to end on small phantom CT series."""

from __future__ import annotations

import base64
import csv
import json
import re
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import pydicom
import pytest

from medforensics.evaluate.report import write_report
from medforensics.evaluate.run import (
    CaseScore,
    EvaluationConfig,
    EvaluationError,
    EvaluationResult,
    level_arrays,
    load_model,
    run_evaluation,
)
from medforensics.io.loader import load_paths
from medforensics.io.types import ImageVolume
from medforensics.samples import chest_ct_phantom, write_ct_series
from medforensics.tamper.launder import LAUNDER_OPS
from medforensics.tamper.registry import simulate
from medforensics.train.cases import on_value_grid

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
ATTACKS = ("inject", "remove", "copy-move", "inpaint")


def phantom_hu(seed: int, slices: int = 10, size: int = 128) -> np.ndarray:
    volume = chest_ct_phantom(n_slices=slices, size=size, rng=np.random.default_rng(seed))
    return np.rint(volume).astype(np.float32)


def write_phantoms(
    root: Path, patients: int = 3, slices: int = 10, scanners: Sequence[str] = ("synthetic",)
) -> Path:
    """One phantom CT series per patient under ``root``; scanner models assigned in turn."""
    for index in range(patients):
        paths = write_ct_series(
            phantom_hu(index, slices), root / f"patient{index}", patient_id=f"PAT-{index:03d}"
        )
        model = scanners[index % len(scanners)]
        if model != "synthetic":
            for path in paths:
                ds = pydicom.dcmread(path)
                ds.ManufacturerModelName = model
                ds.save_as(path, enforce_file_format=True)
    return root


def evaluate(data: Path, **options: object) -> EvaluationResult:
    settings: dict[str, object] = {"attacks": ATTACKS, "bootstrap": 100, **options}
    return run_evaluation(EvaluationConfig(data=[data], model="noise-residual", **settings))  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def in_dist(tmp_path_factory: pytest.TempPathFactory) -> tuple[EvaluationResult, Path]:
    root = write_phantoms(tmp_path_factory.mktemp("data"))
    (root / "broken.dcm").write_bytes(b"this is not a DICOM file")
    result = evaluate(root)
    out = tmp_path_factory.mktemp("report")
    write_report(result, out)
    return result, out


def test_metrics_cover_every_level_with_intervals(in_dist: tuple[EvaluationResult, Path]) -> None:
    metrics = json.loads((in_dist[1] / "metrics.json").read_text())

    assert metrics["model"]["name"] == "noise-residual"
    assert 0.0 < metrics["model"]["threshold"] < 1.0
    assert metrics["software_version"] and metrics["seed"] == 0
    for level in ("slice", "case", "study"):
        figures = metrics["levels"][level]
        for key in ("roc_auc", "average_precision", "eer", "accuracy", "recall", "f1", "ece"):
            assert key in figures, (level, key)
        assert 0.0 <= figures["roc_auc"] <= 1.0
        assert set(figures["tpr_at_fpr"]) == {"0.01", "0.05"}
        assert set(figures["confusion"]) == {"tn", "fp", "fn", "tp"}
        assert sum(figures["confusion"].values()) == figures["n_cases"]
        assert len(figures["reliability"]["counts"]) == 10
        interval = figures["roc_auc_ci"]
        assert interval["low"] <= figures["roc_auc"] <= interval["high"]
    case = metrics["levels"]["case"]
    assert case["n_authentic"] == 6  # 3 series of 10 slices = 6 chunks of 5
    assert case["n_manipulated"] == metrics["data"]["cases"]["manipulated"]
    assert set(metrics["per_attack"]) == set(ATTACKS)
    assert list(metrics["per_scanner"]) == ["medforensics phantom synthetic"]
    assert metrics["localisation"]["cases"] == case["n_manipulated"]
    assert 0.0 <= metrics["localisation"]["hit_rate"] <= 1.0


def test_data_summary_counts_without_patient_ids(in_dist: tuple[EvaluationResult, Path]) -> None:
    text = (in_dist[1] / "metrics.json").read_text()
    data = json.loads(text)["data"]

    assert data["volumes"] == 3 and data["patients"] == 3 and data["slices"] == 30
    assert data["cases_per_patient"] == sorted(data["cases_per_patient"], reverse=True)
    assert sum(data["cases_per_patient"]) == data["cases"]["scored"]
    assert data["scanners"]["medforensics phantom synthetic"]["patients"] == 3
    assert any("broken.dcm" in problem for problem in data["skipped"])
    assert "PAT-00" not in text
    scored = in_dist[0].metrics["data"]["cases"]["scored"]
    assert scored == data["cases"]["authentic"] + data["cases"]["manipulated"]


def test_report_embeds_valid_png_plots(in_dist: tuple[EvaluationResult, Path]) -> None:
    out = in_dist[1]
    metrics = json.loads((out / "metrics.json").read_text())
    markdown = (out / "report.md").read_text()
    page = (out / "report.html").read_text()

    names = {Path(p).name for p in metrics["plots"]}
    assert {"roc.png", "pr.png", "reliability.png", "per_attack.png"} <= names
    assert any(name.startswith("heatmap_") for name in names)
    assert sum(name.startswith("heatmap_") for name in names) <= 4
    embedded = re.findall(r'src="data:image/png;base64,([^"]+)"', page)
    assert len(embedded) == len(metrics["plots"])
    for relative, encoded in zip(metrics["plots"], embedded, strict=True):
        content = (out / relative).read_bytes()
        assert content.startswith(PNG_SIGNATURE)
        assert base64.b64decode(encoded) == content
        assert f"]({relative})" in markdown
    assert "| case |" in markdown and "ROC-AUC [95% CI]" in markdown
    assert "<table>" in page and "broken.dcm" in page


def _score(label: int, score: float, study: str, source: int, patient: str = "p") -> CaseScore:
    return CaseScore(
        score=score,
        label=label,
        attack="inject" if label else None,
        patient=patient,
        scanner="s",
        study=study,
        source=source,
        slice_scores=np.array([score, score / 2]),
        slice_labels=np.array([label, 0], dtype=np.int8),
    )


def test_study_level_puts_each_twin_into_an_otherwise_intact_study() -> None:
    scored = [
        _score(0, 0.2, "A", 0),
        _score(1, 0.3, "A", 0),  # replaces chunk 0; chunk 1 (0.6) stays
        _score(0, 0.6, "A", 1),
        _score(1, 0.9, "A", 1),  # replaces chunk 1; chunk 0 (0.2) stays
        _score(0, 0.1, "B", 2, "q"),
    ]

    labels, scores, patients = level_arrays(scored, "study")

    assert labels.tolist() == [0, 0, 1, 1]
    assert scores.tolist() == [0.6, 0.1, 0.6, 0.9]
    assert patients.tolist() == ["p", "q", "p", "p"]
    slice_labels, slice_scores, _ = level_arrays(scored, "slice")
    assert slice_labels.tolist() == [0, 0, 1, 0, 0, 0, 1, 0, 0, 0]
    assert slice_scores[:2].tolist() == [0.2, 0.1]


def test_robustness_lists_every_laundering_op(tmp_path: Path) -> None:
    root = write_phantoms(tmp_path / "data", patients=1)

    result = evaluate(root, protocol="robustness")

    ops = result.metrics["protocol"]["ops"]
    assert list(ops) == list(LAUNDER_OPS)
    for figures in ops.values():
        assert figures["authentic_cases"] == 2 and figures["manipulated_cases"] >= 1
        assert figures["roc_auc"] is None or 0.0 <= figures["roc_auc"] <= 1.0
    files = write_report(result, tmp_path / "out")
    assert "robustness.png" in {p.name for p in files.plots}
    assert all(f"| {op} |" in files.markdown.read_text() for op in LAUNDER_OPS)


def test_cross_scanner_breaks_down_per_scanner(tmp_path: Path) -> None:
    root = write_phantoms(tmp_path / "data", patients=2, scanners=("synthetic", "other-model"))

    result = evaluate(root, protocol="cross-scanner")

    per_scanner = result.metrics["per_scanner"]
    assert set(per_scanner) == {
        "medforensics phantom synthetic",
        "medforensics phantom other-model",
    }
    assert all(entry["patients"] == 1 for entry in per_scanner.values())
    assert "with --retrain" in result.metrics["protocol"]["notes"][0]


def test_leave_one_attack_out_without_retraining_says_so(tmp_path: Path) -> None:
    root = write_phantoms(tmp_path / "data", patients=1)

    result = evaluate(root, protocol="leave-one-attack-out")
    files = write_report(result, tmp_path / "out")

    assert "not a leave-one-attack-out result" in result.metrics["protocol"]["notes"][0]
    assert "not a leave-one-attack-out result" in files.markdown.read_text()
    assert set(result.metrics["per_attack"]) <= set(ATTACKS)


def test_same_seed_same_figures_and_other_seed_other_cases(tmp_path: Path) -> None:
    root = write_phantoms(tmp_path / "data", patients=1)

    first, again = evaluate(root, seed=3), evaluate(root, seed=3)
    other = evaluate(root, seed=4)

    assert first.metrics["levels"] == again.metrics["levels"]
    assert first.metrics["data"]["case_seed"] != other.metrics["data"]["case_seed"]
    assert not np.array_equal(first.curves["slice"][1], other.curves["slice"][1])


def write_ctgan_standin(root: Path) -> Path:
    """A tiny dataset in the CT-GAN layout: two clean scans, one injected, one removed."""
    scans = root / "CT_Scans" / "EXP1_blind"
    rows = []
    for index, kind in enumerate(("TB", "TM", "FM", "FB")):
        uuid = f"scan{index:02d}"
        hu = phantom_hu(20 + index)
        volume = ImageVolume(uuid, "nifti", "CT", hu, spacing=(2.5, 0.7, 0.7))
        centre = (4, 60, 40)
        if kind in ("FM", "FB"):
            attack = "inject" if kind == "FM" else "remove"
            result = simulate(volume, attack, seed=index)
            hu = on_value_grid(hu, result.pixels)
            centre = result.truth.centre
        write_ct_series(hu, scans / uuid, patient_id=f"CTGAN-{index}")
        rows.append([kind, uuid, centre[0], centre[2], centre[1]])
    labels = root / "labels_exp1.csv"
    with labels.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["type", "uuid", "slice", "x", "y"])
        writer.writerows(rows)
        writer.writerow(["FM", "missing-scan", 1, 2, 3])
    return labels


def test_ctgan_layout_dataset_is_evaluated_scan_by_scan(tmp_path: Path) -> None:
    labels = write_ctgan_standin(tmp_path / "ctgan")

    config = EvaluationConfig(
        data=[tmp_path / "ctgan"], model="noise-residual", ctgan_labels=labels, bootstrap=50
    )
    result = run_evaluation(config)

    data = result.metrics["data"]
    assert data["source"] == "ctgan"
    assert data["ctgan"]["experiment"] == 1
    assert data["ctgan"]["locations"] == {"TB": 1, "TM": 1, "FM": 2, "FB": 1}
    assert data["ctgan"]["outside_scan"] == 0
    assert data["cases"]["authentic"] == 2 and data["cases"]["manipulated"] == 2
    assert set(result.metrics["per_attack"]) == {"inject", "remove"}
    assert any("missing-scan" in problem for problem in data["skipped"])
    assert result.metrics["levels"]["study"]["n_cases"] == 4  # one study per scan
    assert result.metrics["localisation"]["cases"] == 2
    files = write_report(result, tmp_path / "out")
    assert "CT-GAN labels labels_exp1.csv" in files.markdown.read_text()


def test_no_usable_data_names_the_path(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-folder"
    with pytest.raises(EvaluationError, match="no-such-folder"):
        evaluate(missing)
    junk = tmp_path / "junk"
    junk.mkdir()
    (junk / "notes.dcm").write_bytes(b"not an image")
    with pytest.raises(EvaluationError, match=r"junk.*notes\.dcm"):
        evaluate(junk)


def test_unknown_model_and_bad_options_are_refused(tmp_path: Path) -> None:
    with pytest.raises(EvaluationError, match="unknown detector"):
        load_model("no-such-detector")
    with pytest.raises(EvaluationError, match=r"missing\.pt"):
        load_model(str(tmp_path / "missing.pt"))
    with pytest.raises(EvaluationError, match="--retrain"):
        evaluate(tmp_path, protocol="robustness", retrain=True)
    with pytest.raises(EvaluationError, match=r"unknown attack.*no-such-attack"):
        evaluate(tmp_path, attacks=("inject", "no-such-attack"))
    with pytest.raises(EvaluationError, match="unknown laundering"):
        evaluate(write_phantoms(tmp_path / "d", 1), protocol="robustness", launder_ops=("x",))


@pytest.fixture
def one_torch_thread() -> Iterator[None]:
    """Tiny tensors on a busy 2-core machine run far faster on one thread than on two."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.mark.slow
@pytest.mark.usefixtures("one_torch_thread")
def test_retraining_protocols_train_per_fold_and_load_checkpoints(tmp_path: Path) -> None:
    root = write_phantoms(tmp_path / "data", 6, scanners=("synthetic", "other"))
    volumes = [v for v in load_paths([str(root)]) if isinstance(v, ImageVolume)]
    assert len(volumes) == 6
    small = {"rounds": 1, "steps": 2, "width": 8, "models_dir": tmp_path / "models"}

    loao = evaluate(
        root, protocol="leave-one-attack-out", retrain=True, attacks=("inject", "inpaint"), **small
    )
    xs = evaluate(root, protocol="cross-scanner", retrain=True, **small)

    folds = loao.metrics["protocol"]["folds"]
    assert set(folds) == {"inject", "inpaint"}
    for fold in folds.values():
        assert "error" not in fold, fold
        assert fold["held_out"]["manipulated_cases"] >= 1
    assert loao.metrics["protocol"]["split"].startswith("by patient")
    scanner_folds = xs.metrics["protocol"]["folds"]
    assert len(scanner_folds) == 2
    for fold in scanner_folds.values():
        assert "error" not in fold, fold
        assert fold["train_volumes"] == 3
        assert fold["retrained"]["authentic_cases"] == 3 * 2  # 3 series of 2 chunks
    checkpoint = tmp_path / "models" / "loao-inject.pt"
    detector, info = load_model(str(checkpoint))
    assert detector.name == "ct-local"
    assert info["checkpoint_sha256"] and len(info["checkpoint_sha256"]) == 64
    files = write_report(xs, tmp_path / "out")
    assert "cross-scanner.png" in {p.name for p in files.plots}
