"""``signature``: checks the DICOM digital signatures of every source file of a volume.

A signature is proof where the pixel detectors can only estimate: if it verifies, nothing it
covers changed since it was made; if it does not, something did. So:

* a **broken** signature is a ``signature`` finding (score 1.0, on the file's first slice, at
  the image centre, naming what changed) and the verdict is ``manipulated``;
* **valid** signatures on every file give ``authentic`` with score 0.0 and a note naming the
  signers (a signature says nothing about what happened *before* signing);
* **unsigned** files, signatures whose certificate is untrusted, expired or revoked, and
  non-DICOM inputs are not assessed (``inconclusive``, with a note): the absence of a signature
  is not evidence of manipulation.

Certificates are checked against the CA bundle in ``trust`` (default ``$MEDFORENSICS_TRUST``)
and the CRLs in ``crls`` (default ``$MEDFORENSICS_CRL``, paths separated by ``os.pathsep``);
without a bundle, trust is not evaluated and the note says so.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from medforensics.detect.base import Detector
from medforensics.detect.registry import register_detector
from medforensics.detect.types import Detection, Finding
from medforensics.io.types import ImageVolume

if TYPE_CHECKING:
    from medforensics.provenance.verify import FileVerification, VerifyOptions

TRUST_ENV = "MEDFORENSICS_TRUST"
CRL_ENV = "MEDFORENSICS_CRL"


@register_detector
class SignatureDetector(Detector):
    """Verifies DICOM digital signatures (PS3.15 Annex C) of a volume's files."""

    name = "signature"
    modalities = ()

    def __init__(self, trust: str | None = None, crls: Sequence[str] | None = None) -> None:
        self.trust = trust if trust is not None else os.environ.get(TRUST_ENV) or None
        if crls is None:
            crls = [p for p in os.environ.get(CRL_ENV, "").split(os.pathsep) if p]
        self.crls = list(crls)
        self._options: VerifyOptions | None = None

    def _verify_options(self) -> VerifyOptions:
        if self._options is None:
            from medforensics.provenance.certs import load_certificates, load_crl
            from medforensics.provenance.verify import VerifyOptions

            self._options = VerifyOptions(
                trust=tuple(load_certificates(self.trust)) if self.trust else None,
                crls=tuple(load_crl(path) for path in self.crls),
            )
        return self._options

    def detect(self, volume: ImageVolume) -> Detection:
        if not volume.kind.startswith("dicom"):
            return Detection.not_assessed(self.name, "signatures apply to DICOM files only")
        try:
            from medforensics.provenance.verify import verify_file

            options = self._verify_options()
        except ImportError:
            return Detection.not_assessed(
                self.name,
                "signatures not checked: install the extra with "
                "pip install 'medforensics[provenance]'",
            )
        except ValueError as exc:  # an unreadable trust bundle or CRL
            return Detection.not_assessed(self.name, f"signatures not checked: {exc}")
        files = [path for path in volume.source_files if Path(path).exists()]
        if not files:
            return Detection.not_assessed(
                self.name, "signatures not checked: the source files are no longer on disk"
            )
        reports = {path: verify_file(path, options) for path in files}
        return self._answer(volume, reports)

    def _answer(self, volume: ImageVolume, reports: dict[Path, FileVerification]) -> Detection:
        total = len(reports)
        by_status: dict[str, list[Path]] = {}
        for path, report in reports.items():
            by_status.setdefault(report.status, []).append(path)
        first_slice: dict[Path, int] = {}
        for index, ref in enumerate(volume.slices):
            first_slice.setdefault(ref.source_file, index)
        _, rows, cols = volume.shape
        findings = []
        for path in by_status.get("invalid", []):
            broken = [s for s in reports[path].signatures if not s.intact]
            detail = "; ".join(
                f"signature of {s.signer or 'unknown signer'} invalid: "
                + "; ".join(s.changed or s.problems)
                for s in broken
            )
            centre = (first_slice.get(path, 0), rows // 2, cols // 2)
            findings.append(Finding("signature", 1.0, *centre, detail=f"{path.name}: {detail}"))
        notes = _notes(reports, by_status, total)
        if findings:
            notes.insert(0, f"{len(findings)} of {total} files changed after they were signed")
            return Detection(self.name, 1.0, "manipulated", findings, notes=notes)
        if len(by_status.get("valid", [])) == total:
            notes.append(
                "a valid signature proves the signed data is unchanged since signing, "
                "not that it was authentic when signed"
            )
            return Detection(self.name, 0.0, "authentic", notes=notes)
        return Detection(self.name, 0.5, "inconclusive", notes=notes)

    def describe(self) -> dict[str, object]:
        return {"name": self.name, "trust": self.trust, "crls": self.crls}


def _notes(
    reports: dict[Path, FileVerification], by_status: dict[str, list[Path]], total: int
) -> list[str]:
    notes = []
    valid = by_status.get("valid", [])
    if valid:
        signers = sorted(
            {s.signer or "unknown" for p in valid for s in reports[p].signatures if s.intact}
        )
        notes.append(
            f"{len(valid)} of {total} files carry valid signatures (signer {', '.join(signers)})"
        )
        if any("trust list" in n for p in valid for s in reports[p].signatures for n in s.notes):
            notes.append("the signers were not checked against a trust list")
    untrusted = by_status.get("untrusted", [])
    if untrusted:
        problems = sorted(
            {
                problem.message
                for p in untrusted
                for s in reports[p].signatures
                for problem in s.certificate_problems
            }
        )
        notes.append(
            f"{len(untrusted)} of {total} files carry intact signatures whose certificate "
            f"cannot be relied on: {'; '.join(problems)}"
        )
    unsigned = by_status.get("unsigned", [])
    if unsigned:
        notes.append(f"unsigned: {len(unsigned)} of {total} files carry no digital signature")
    for path in by_status.get("error", []):
        notes.append(f"{path.name}: {reports[path].error}")
    return notes
