"""Platt scaling, operating points and the patient-split calibration."""

from __future__ import annotations

import json

import numpy as np
import pytest

from medforensics.detect.calibration import CalibrationRecord, PlattCalibration, fit_platt
from medforensics.detect.types import OperatingPoint
from medforensics.train.calibrate import Case, calibrate_cases


def test_fit_platt_is_monotone_and_balanced() -> None:
    rng = np.random.default_rng(0)
    statistics = np.r_[rng.normal(0.0, 1.0, 100), rng.normal(2.0, 1.0, 500)]
    labels = np.r_[np.zeros(100), np.ones(500)]
    calibration = fit_platt(statistics, labels)
    assert calibration.a > 0
    # equal weights: the two class means are symmetric around 1, so p(1) is close to 1/2
    assert calibration.probability(1.0) == pytest.approx(0.5, abs=0.05)
    # without balancing the 5:1 ratio of manipulated cases shows up as a prior
    assert fit_platt(statistics, labels, balanced=False).probability(1.0) > 0.75
    assert calibration.inverse(calibration.probability(1.7)) == pytest.approx(1.7)


def test_fit_platt_needs_both_classes() -> None:
    with pytest.raises(ValueError, match="both authentic and manipulated"):
        fit_platt(np.array([1.0, 2.0]), np.array([1.0, 1.0]))


def test_operating_point_verdicts() -> None:
    point = OperatingPoint(manipulated_at=0.8, authentic_below=0.3)
    assert point.verdict(0.9) == "manipulated"
    assert point.verdict(0.5) == "inconclusive"
    assert point.verdict(0.1) == "authentic"
    with pytest.raises(ValueError):
        OperatingPoint(manipulated_at=0.2, authentic_below=0.5)


def test_record_round_trips(tmp_path) -> None:
    record = CalibrationRecord(
        PlattCalibration(2.0, -3.0), OperatingPoint(0.7, 0.4, 0.01), {"x": 1}
    )
    path = tmp_path / "cal.json"
    record.save(path)
    loaded = CalibrationRecord.load(path)
    assert loaded.calibration == record.calibration
    assert loaded.operating_point == record.operating_point
    assert json.loads(path.read_text())["card"] == {"x": 1}


def test_calibrate_cases_reports_only_held_out_patients() -> None:
    rng = np.random.default_rng(1)
    cases = []
    for patient in range(10):
        for _ in range(20):
            cases.append(Case(f"P{patient}", None, float(rng.normal(1.0, 0.3)), "x"))
            cases.append(Case(f"P{patient}", "splice", float(rng.normal(3.0, 0.3)), "x"))
    report = calibrate_cases(cases, seed=0, target_fpr=0.05)
    assert set(report.fit_patients).isdisjoint(report.held_out_patients)
    assert report.held_out["patients"] == report.held_out_patients
    # well separated classes: near-perfect on held-out patients, FPR near its target
    assert report.held_out["auc"] > 0.99
    assert report.held_out["fpr_at_threshold"] <= 0.1
    point = report.record.operating_point
    assert point.authentic_below <= point.manipulated_at
