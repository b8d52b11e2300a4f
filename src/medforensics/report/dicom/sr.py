"""The Comprehensive 3D SR: a TID 1500 Measurement Report with the score, verdict and findings.

Layout (IHE AI Results):

- observation context: the device (``medforensics <version>``, model name, a stable device UID;
  the serial number holds the checkpoint SHA-256 when there is one);
- procedure reported: ``(MF-ANALYSIS, 99MEDFOR)`` image manipulation analysis;
- image library: the images the findings point at;
- one TID 1501 group for the whole series: probability of manipulation (UCUM ``1``) and the
  verdict (authentic / manipulated / inconclusive) as a qualitative evaluation;
- one TID 1410 planar ROI group per finding: a POINT (or a CIRCLE when the finding has a radius)
  SCOORD on the source image (frame number for multi-frame), the finding type coding its kind
  and the finding's probability as a measurement.

Every group carries the algorithm identification (TID 4019): model name, version and checkpoint
hash. SCOORD values are (column, row) at the centre of the pixel, i.e. ``(col + 0.5, row + 0.5)``.
"""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import highdicom as hd
import numpy as np
from highdicom.sr import (
    AlgorithmIdentification,
    CodedConcept,
    Comprehensive3DSR,
    DeviceObserverIdentifyingAttributes,
    GraphicTypeValues,
    ImageLibraryEntryDescriptors,
    ImageRegion,
    Measurement,
    MeasurementReport,
    MeasurementsAndQualitativeEvaluations,
    ObservationContext,
    ObserverContext,
    PlanarROIMeasurementsAndQualitativeEvaluations,
    QualitativeEvaluation,
    SourceImageForRegion,
    TrackingIdentifier,
)
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.sr.codedict import codes as dcm_codes

from medforensics.io.types import ImageVolume
from medforensics.report.dicom import codes
from medforensics.report.dicom.sources import (
    MANUFACTURER,
    SERIES_NUMBERS,
    Device,
    DicomOutputError,
    source_for_slice,
)
from medforensics.scan import ResultFinding, ScanResult

OVERALL_IDENTIFIER = "medforensics overall result"
#: "finding 2 (copy-move, slice 14)": kind and slice index, readable by people and by the reader
_FINDING_IDENTIFIER = re.compile(r"^finding (?P<n>\d+) \((?P<kind>.+), slice (?P<slice>\d+)\)$")


def _algorithm(device: Device) -> AlgorithmIdentification:
    parameters = [f"{key}={value}" for key, value in device.parameters.items()]
    return AlgorithmIdentification(
        name=device.model_name,
        version=device.model_version,
        parameters=parameters or None,
        manufacturer=MANUFACTURER,
    )


def _observation_context(device: Device) -> ObservationContext:
    observer = ObserverContext(
        observer_type=dcm_codes.DCM.Device,
        observer_identifying_attributes=DeviceObserverIdentifyingAttributes(
            uid=device.uid,
            name=device.name,
            manufacturer_name=MANUFACTURER,
            model_name=device.model_name,
            serial_number=device.serial_number,
        ),
    )
    return ObservationContext(observer_device_context=observer)


def _probability(value: float, algorithm: AlgorithmIdentification) -> Measurement:
    return Measurement(
        name=codes.MANIPULATION_PROBABILITY,
        value=float(value),
        unit=codes.UNITLESS,
        algorithm_id=algorithm,
    )


def _overall_group(
    result: ScanResult, algorithm: AlgorithmIdentification
) -> MeasurementsAndQualitativeEvaluations:
    assert result.score is not None and result.verdict is not None
    return MeasurementsAndQualitativeEvaluations(
        tracking_identifier=TrackingIdentifier(uid=hd.UID(), identifier=OVERALL_IDENTIFIER),
        finding_type=codes.MANIPULATION_ANALYSIS,
        algorithm_id=algorithm,
        measurements=[_probability(result.score, algorithm)],
        qualitative_evaluations=[
            QualitativeEvaluation(
                name=codes.MANIPULATION_VERDICT, value=codes.VERDICT_CODES[result.verdict]
            )
        ],
    )


def _region(finding: ResultFinding, source: Dataset, frame: int | None) -> ImageRegion:
    centre = (finding.col + 0.5, finding.row + 0.5)
    if finding.radius > 0:
        graphic_type = GraphicTypeValues.CIRCLE
        graphic_data = np.array([centre, (centre[0] + finding.radius, centre[1])])
    else:
        graphic_type = GraphicTypeValues.POINT
        graphic_data = np.array([centre])
    return ImageRegion(
        graphic_type=graphic_type,
        graphic_data=graphic_data,
        source_image=SourceImageForRegion.from_source_image(
            source, referenced_frame_numbers=[frame] if frame is not None else None
        ),
    )


def _library_image(source: Dataset) -> Dataset:
    """A header highdicom's image library accepts.

    highdicom describes CT/MR/PT and projection images with geometry read from the top level
    (PixelSpacing, ImagePositionPatient, ImagerPixelSpacing...). Enhanced multi-frame images keep
    it in functional groups and some files lack it; those get the common descriptors only
    (modality, frame of reference, rows, columns), chosen by presenting them as ``OT``.
    """
    try:
        ImageLibraryEntryDescriptors(source)
        return source
    except (AttributeError, KeyError, IndexError, TypeError):
        plain = copy.copy(source)
        plain.Modality = "OT"
        return plain


def _finding_group(
    number: int,
    finding: ResultFinding,
    region: ImageRegion,
    algorithm: AlgorithmIdentification,
) -> PlanarROIMeasurementsAndQualitativeEvaluations:
    identifier = f"finding {number} ({finding.kind}, slice {finding.slice})"
    return PlanarROIMeasurementsAndQualitativeEvaluations(
        tracking_identifier=TrackingIdentifier(uid=hd.UID(), identifier=identifier),
        referenced_region=region,
        finding_type=codes.finding_code(finding.kind),
        algorithm_id=algorithm,
        measurements=[_probability(finding.score, algorithm)],
    )


def build_sr(
    volume: ImageVolume, result: ScanResult, datasets: list[Dataset], device: Device
) -> Comprehensive3DSR:
    """The measurement report of ``result`` on ``volume`` whose source headers are ``datasets``."""
    if result.score is None or result.verdict not in codes.VERDICT_CODES:
        raise DicomOutputError(
            f"{volume.input}: the result has no score or verdict "
            f"({result.error or 'not analysed'}); there is nothing to report in an SR"
        )
    algorithm = _algorithm(device)
    groups: list[Any] = [_overall_group(result, algorithm)]
    referenced: dict[str, Dataset] = {}
    n_slices, rows, cols = volume.shape
    for number, finding in enumerate(result.findings, start=1):
        if not (
            0 <= finding.slice < n_slices and 0 <= finding.row < rows and 0 <= finding.col < cols
        ):
            raise DicomOutputError(
                f"{volume.input}: finding {number} at slice {finding.slice}, row {finding.row}, "
                f"col {finding.col} lies outside the {n_slices}x{rows}x{cols} image"
            )
        source, frame = source_for_slice(volume, datasets, finding.slice)
        referenced.setdefault(source.SOPInstanceUID, source)
        groups.append(_finding_group(number, finding, _region(finding, source, frame), algorithm))
    report = MeasurementReport(
        observation_context=_observation_context(device),
        procedure_reported=codes.MANIPULATION_ANALYSIS,
        imaging_measurements=groups,
        referenced_images=[_library_image(ds) for ds in referenced.values()] or None,
    )
    return Comprehensive3DSR(
        evidence=datasets,
        content=report[0],
        series_instance_uid=hd.UID(),
        series_number=SERIES_NUMBERS["sr"],
        sop_instance_uid=hd.UID(),
        instance_number=1,
        manufacturer=MANUFACTURER,
        is_complete=True,
        series_description="medforensics manipulation analysis (SR)",
        coding_schemes=[codes.coding_scheme_identification()],
        manufacturer_model_name=device.model_name,
        software_versions=device.software_version,
        device_serial_number=device.serial_number,
    )


def _probability_of(group: Any) -> float:
    measurements = group.get_measurements(name=codes.MANIPULATION_PROBABILITY)
    if not measurements:
        raise DicomOutputError("a measurement group has no probability of manipulation")
    return float(measurements[0].value)


def _finding_of(group: PlanarROIMeasurementsAndQualitativeEvaluations) -> dict[str, object]:
    region = group.roi
    if not isinstance(region, ImageRegion):
        raise DicomOutputError("a finding group has no 2D image region")
    col, row = (float(v) for v in region.value[0])
    reference = region.ContentSequence[0].ReferencedSOPSequence[0]
    frames = reference.get("ReferencedFrameNumber")
    finding: dict[str, object] = {
        "kind": None,
        "score": _probability_of(group),
        "row": int(np.floor(row)),
        "col": int(np.floor(col)),
        "sop_instance_uid": str(reference.ReferencedSOPInstanceUID),
    }
    if region.graphic_type == GraphicTypeValues.CIRCLE:
        finding["radius"] = float(np.hypot(*(region.value[1] - region.value[0])))
    if frames is not None:
        first = frames[0] if isinstance(frames, MultiValue) else frames
        finding["frame"] = int(first) - 1
    match = _FINDING_IDENTIFIER.match(group.tracking_identifier or "")
    if match:
        finding["slice"] = int(match["slice"])
    finding_type = group.finding_type
    if finding_type is not None:
        finding["kind"] = codes.kind_of_code(finding_type.value, finding_type.scheme_designator)
    if finding["kind"] is None and match:
        finding["kind"] = match["kind"]
    return finding


def read_sr_findings(path: Path) -> dict[str, Any]:
    """Score, verdict and findings of an SR written by ``write_dicom_outputs``.

    Returns:
        ``{"score", "verdict", "findings": [{kind, score, slice, row, col, sop_instance_uid,
        frame?, radius?}]}`` with ``slice`` the 0-based slice index of the analysed volume and
        ``frame`` the 0-based frame for multi-frame sources.
    """
    try:
        document = hd.sr.srread(path)
    except (OSError, ValueError, AttributeError) as exc:
        raise DicomOutputError(f"{path}: not a readable DICOM SR ({exc})") from exc
    report = document.content
    if not isinstance(report, MeasurementReport):
        raise DicomOutputError(f"{path}: not a TID 1500 measurement report")
    overall = [
        g
        for g in report.get_image_measurement_groups()
        if g.tracking_identifier == OVERALL_IDENTIFIER
    ]
    if not overall:
        raise DicomOutputError(f"{path}: no medforensics overall result group in this SR")
    verdicts = overall[0].get_qualitative_evaluations(name=codes.MANIPULATION_VERDICT)
    verdict = None
    if verdicts:
        value: object = verdicts[0].value  # a CodedConcept; highdicom annotates int | float
        if isinstance(value, CodedConcept):
            verdict = codes.verdict_of_code(value.value, value.scheme_designator)
    return {
        "score": _probability_of(overall[0]),
        "verdict": verdict,
        "findings": [_finding_of(g) for g in report.get_planar_roi_measurement_groups()],
    }
