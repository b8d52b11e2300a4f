"""Evaluation: metrics, aggregation to series/study, localisation, patient-level splits, datasets.

The pure core of the evaluation harness. Everything takes numpy arrays or typed objects and
returns dataclasses; nothing here reads models or writes plots.
"""

from __future__ import annotations

from medforensics.evaluate.aggregate import (
    AggregatedScores,
    aggregate_scores,
    get_aggregator,
    list_aggregators,
)
from medforensics.evaluate.bootstrap import ConfidenceInterval, bootstrap_ci
from medforensics.evaluate.calibration import (
    ReliabilityDiagram,
    expected_calibration_error,
    reliability_diagram,
)
from medforensics.evaluate.ctgan_format import (
    CtganDataset,
    CtganFormatError,
    CtganLocation,
    read_ctgan_dataset,
    read_ctgan_labels,
)
from medforensics.evaluate.localisation import (
    GroundTruthRegion,
    LocalisationResult,
    LocalisationSummary,
    localise,
    summarise_localisation,
)
from medforensics.evaluate.metrics import (
    ConfusionMatrix,
    MetricReport,
    RocCurve,
    ThresholdMetrics,
    average_precision,
    compute_metrics,
    confusion_at,
    equal_error_rate,
    metrics_at_threshold,
    roc_auc,
    roc_curve,
    threshold_for_fpr,
    tpr_at_fpr,
)
from medforensics.evaluate.splits import (
    LeakageError,
    PatientSplit,
    ScannerFold,
    check_disjoint,
    leave_one_scanner_out,
    scanner_key,
    split_by_patient,
)

__all__ = [
    "AggregatedScores",
    "ConfidenceInterval",
    "ConfusionMatrix",
    "CtganDataset",
    "CtganFormatError",
    "CtganLocation",
    "GroundTruthRegion",
    "LeakageError",
    "LocalisationResult",
    "LocalisationSummary",
    "MetricReport",
    "PatientSplit",
    "ReliabilityDiagram",
    "RocCurve",
    "ScannerFold",
    "ThresholdMetrics",
    "aggregate_scores",
    "average_precision",
    "bootstrap_ci",
    "check_disjoint",
    "compute_metrics",
    "confusion_at",
    "equal_error_rate",
    "expected_calibration_error",
    "get_aggregator",
    "leave_one_scanner_out",
    "list_aggregators",
    "localise",
    "metrics_at_threshold",
    "read_ctgan_dataset",
    "read_ctgan_labels",
    "reliability_diagram",
    "roc_auc",
    "roc_curve",
    "scanner_key",
    "split_by_patient",
    "summarise_localisation",
    "threshold_for_fpr",
    "tpr_at_fpr",
]
