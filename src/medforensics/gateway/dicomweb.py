"""``medforensics pacs scan``: pull studies over DICOMweb, scan them, store the results back.

QIDO-RS finds the studies (one UID, or every study since a date) and their series; WADO-RS
retrieves each series; the scan pipeline analyses it and writes reports; STOW-RS stores our SR /
SC / PDF into the same study. Our own result objects are never analysed again: series and
instances are skipped when Manufacturer is ``medforensics`` (or the SeriesDescription starts with
it), when the modality or SOP class holds no image, or when an instance has no pixel data.
"""

from __future__ import annotations

import datetime as dt
import logging
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pydicom
from pydicom.dataset import Dataset

from medforensics.detect.base import Detector
from medforensics.gateway.origin import is_non_image_sop_class, is_ours, series_skip_reason
from medforensics.gateway.worker import ReportWriter
from medforensics.scan import ScanResult, scan_paths
from medforensics.utils.optional import require

LOGGER = logging.getLogger("medforensics.gateway.dicomweb")

#: QIDO attributes asked for at series level (Orthanc and most servers return them)
SERIES_FIELDS = ("Modality", "SeriesDescription", "Manufacturer", "SeriesInstanceUID")


class DicomwebError(RuntimeError):
    """The DICOMweb server could not be queried or written to; the message says which step."""


@dataclass
class SeriesScan:
    """What happened to one series of a study."""

    study_uid: str
    series_uid: str
    skipped: str | None = None
    results: list[ScanResult] = field(default_factory=list)
    stored: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "study_instance_uid": self.study_uid,
            "series_instance_uid": self.series_uid,
            "skipped": self.skipped,
            "results": [r.to_dict() for r in self.results],
            "stored_sop_instance_uids": self.stored,
            "notes": self.notes,
        }


def parse_since(text: str) -> str:
    """``YYYY-MM-DD`` or ``YYYYMMDD`` → a QIDO StudyDate range ``YYYYMMDD-``."""
    for pattern in ("%Y-%m-%d", "%Y%m%d"):
        try:
            return dt.datetime.strptime(text.strip(), pattern).strftime("%Y%m%d") + "-"
        except ValueError:
            continue
    raise ValueError(f"--since {text!r}: use a date like 2024-01-31")


def make_client(
    url: str, *, auth: str | None = None, token: str | None = None, timeout_s: float = 60.0
) -> Any:
    """A DICOMweb client; ``auth`` is ``user:password`` (HTTP basic), ``token`` a bearer token."""
    api = require("dicomweb_client.api", "pulling studies over DICOMweb")
    import requests

    session = requests.Session()
    if auth:
        user, sep, password = auth.partition(":")
        if not sep:
            raise ValueError("--auth must be user:password")
        session.auth = (user, password)
    headers = {"Authorization": f"Bearer {token}"} if token else None
    return api.DICOMwebClient(url.rstrip("/"), session=session, headers=headers, timeout=timeout_s)


def _value(item: dict[str, Any], keyword: str) -> str | None:
    tag = f"{pydicom.datadict.tag_for_keyword(keyword):08X}"
    values = item.get(tag, {}).get("Value") or []
    if not values:
        return None
    value = values[0]
    if isinstance(value, dict):  # PN
        return str(value.get("Alphabetic", ""))
    return str(value)


def find_studies(
    client: Any, *, studies: Sequence[str] = (), since: str | None = None, limit: int | None = None
) -> list[str]:
    """Study UIDs to scan: those given, else every study since ``since`` (else every study)."""
    if studies:
        return list(dict.fromkeys(studies))
    filters = {"StudyDate": parse_since(since)} if since else None
    try:
        found = client.search_for_studies(
            search_filters=filters, limit=limit, get_remaining=limit is None
        )
    except Exception as exc:
        raise DicomwebError(f"QIDO-RS study search failed: {exc}") from exc
    uids = [_value(item, "StudyInstanceUID") for item in found]
    return [uid for uid in uids if uid]


def _keep(ds: Dataset) -> str | None:
    """Why a retrieved instance is not analysed, or None to analyse it."""
    if is_ours(ds.get("Manufacturer"), ds.get("SeriesDescription")):
        return "a medforensics result object"
    if is_non_image_sop_class(ds.get("SOPClassUID")) or "PixelData" not in ds:
        return "no image"
    return None


def _save(ds: Dataset, path: Path) -> None:
    if not getattr(ds, "file_meta", None) or "TransferSyntaxUID" not in ds.file_meta:
        ds.ensure_file_meta()
        ds.file_meta.TransferSyntaxUID = pydicom.uid.ExplicitVRLittleEndian
    ds.save_as(path, enforce_file_format=True)


def scan_study(
    client: Any,
    study_uid: str,
    detector: Detector,
    *,
    store: bool = True,
    out_dir: Path | None = None,
    attach: Sequence[str] = ("sr", "sc", "pdf"),
) -> Iterator[SeriesScan]:
    """Scan every image series of one study; results are STOWed back when ``store``."""
    try:
        series_list = client.search_for_series(study_uid, fields=list(SERIES_FIELDS))
    except Exception as exc:
        raise DicomwebError(f"QIDO-RS series search in study {study_uid} failed: {exc}") from exc
    for item in series_list:
        series_uid = _value(item, "SeriesInstanceUID") or ""
        scan = SeriesScan(study_uid, series_uid)
        scan.skipped = series_skip_reason(
            {keyword: _value(item, keyword) for keyword in SERIES_FIELDS}
        )
        if scan.skipped is None:
            _scan_series(client, scan, detector, store=store, out_dir=out_dir, attach=attach)
        yield scan


def _scan_series(
    client: Any,
    scan: SeriesScan,
    detector: Detector,
    *,
    store: bool,
    out_dir: Path | None,
    attach: Sequence[str],
) -> None:
    try:
        datasets = client.retrieve_series(scan.study_uid, scan.series_uid)
    except Exception as exc:
        scan.notes.append(f"WADO-RS retrieval failed: {exc}")
        scan.skipped = "could not be retrieved"
        return
    with tempfile.TemporaryDirectory(prefix="medforensics-pacs-") as tmp:
        folder = Path(tmp) / "series"
        folder.mkdir()
        kept = 0
        reasons: set[str] = set()
        for index, ds in enumerate(datasets):
            reason = _keep(ds)
            if reason is not None:
                reasons.add(reason)
                continue
            _save(ds, folder / f"{index:05d}.dcm")
            kept += 1
        if not kept:
            scan.skipped = " and ".join(sorted(reasons)) or "no instances"
            return
        reports = out_dir / scan.study_uid / scan.series_uid if out_dir else Path(tmp) / "reports"
        writer = ReportWriter(detector, reports)
        scan.results = list(scan_paths([str(folder)], detector, on_analysed=writer))
        scan.notes.extend(writer.notes)
        objects = [path for kind, path in writer.dicom if kind in attach]
        if store and objects:
            scan.stored = _stow(client, scan, objects)


def _stow(client: Any, scan: SeriesScan, objects: Sequence[Path]) -> list[str]:
    datasets = [pydicom.dcmread(path) for path in objects]
    try:
        response = client.store_instances(datasets, study_instance_uid=scan.study_uid)
    except Exception as exc:
        scan.notes.append(f"STOW-RS failed: {exc}")
        return []
    failed = {
        str(item.get("ReferencedSOPInstanceUID", ""))
        for item in (response.get("FailedSOPSequence") or [])
    }
    if failed:
        scan.notes.append(f"STOW-RS refused {len(failed)} object(s)")
    return [str(ds.SOPInstanceUID) for ds in datasets if str(ds.SOPInstanceUID) not in failed]
