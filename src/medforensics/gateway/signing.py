"""DICOM digital signatures in the gateway: signed on ingest, verified before leaving the spool.

* **On ingest** (``IngestSigner``, called by the SCP's C-STORE handler before it answers): the
  received data set gets a Digital Signatures Sequence item made with the site's key
  (``medforensics.provenance.sign``); signatures it arrived with are kept as they are. The signed
  file is what the spool stores, analyses and forwards; the index records the new signature's
  UID. Signing happens before the acknowledgement so that no file ever sits unsigned in the
  spool: the signature covers exactly what the sender handed over.
* **On the way out** (``verify_batch``, called by the dispatcher before any action): every
  instance still in the spool is verified. A broken signature — the file changed in the spool
  after the gateway signed it, or it arrived with a sender's signature already broken — means the
  series is not forwarded as authentic: it is quarantined and an alert names the file and what
  changed (``signature_result``).

Keys, certificates, trust bundles and revocation lists are loaded once, at start-up
(``GatewaySigning.load``): a bad path or a wrong passphrase stops the gateway with an error that
names the setting and the file, never an error per instance.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from io import BytesIO
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydicom.dataset import Dataset, FileMetaDataset

from medforensics.gateway import tables as t
from medforensics.gateway.config import ConfigError, SigningConfig
from medforensics.utils.optional import require

if TYPE_CHECKING:
    from medforensics.detect.base import Detector
    from medforensics.gateway.spool import Spool
    from medforensics.gateway.tables import GatewayBatch
    from medforensics.provenance.sign import Signer
    from medforensics.provenance.verify import VerifyOptions

LOGGER = logging.getLogger("medforensics.gateway.signing")

#: the ``detector`` name of the result entry a broken signature adds to a batch's results
SIGNATURE_CHECK = "gateway-signature-check"
#: where a broken signature broke, for people
WHERE = {
    "spool": "changed in the spool after the gateway signed it on arrival",
    "arrival": "arrived with a broken signature (the gateway's own, made on arrival, is intact)",
    "unknown": "signature broken (not signed by the gateway on arrival: when is not known)",
}


def _passphrase(config: SigningConfig) -> bytes | None:
    if config.passphrase_env is None:
        return None
    value = os.environ.get(config.passphrase_env)
    if not value:
        raise ConfigError(
            f"signing.passphrase_env: the environment variable {config.passphrase_env} is not "
            f"set or empty; it must hold the passphrase of {config.key}"
        )
    return value.encode("utf-8")


def load_signer(config: SigningConfig) -> Signer:
    """The signing key and certificate of ``config``; ``ConfigError`` names what is wrong."""
    from medforensics.provenance.certs import (
        KeyFileError,
        PassphraseNeeded,
        load_certificate,
        load_private_key,
        utcnow,
    )
    from medforensics.provenance.sign import Signer, SigningError

    assert config.key is not None and config.cert is not None
    passphrase = _passphrase(config)
    try:
        key = load_private_key(config.key, passphrase)
    except PassphraseNeeded as exc:
        raise ConfigError(
            f"signing.key: {exc} (set signing.passphrase_env to the environment variable that "
            "holds it)"
        ) from exc
    except KeyFileError as exc:
        raise ConfigError(f"signing.key: {exc}") from exc
    try:
        certificate = load_certificate(config.cert)
    except KeyFileError as exc:
        raise ConfigError(f"signing.cert: {exc}") from exc
    try:
        signer = Signer(key, certificate)
    except SigningError as exc:
        raise ConfigError(
            f"signing.key: {config.key} does not belong to the certificate {config.cert} "
            f"(signing.cert): {exc}"
        ) from exc
    try:
        signer.check_valid(utcnow())
    except SigningError as exc:
        raise ConfigError(f"signing.cert: {config.cert}: {exc}") from exc
    return signer


def load_verify_options(config: SigningConfig) -> VerifyOptions:
    """The trust bundle and revocation lists of ``config``, loaded once."""
    from medforensics.provenance.certs import KeyFileError, load_certificates, load_crl
    from medforensics.provenance.verify import VerifyOptions

    trust = None
    if config.trust is not None:
        try:
            trust = tuple(load_certificates(config.trust))
        except KeyFileError as exc:
            raise ConfigError(f"signing.trust: {exc}") from exc
    crls = []
    for path in config.crls:
        try:
            crls.append(load_crl(path))
        except KeyFileError as exc:
            raise ConfigError(f"signing.crls: {exc}") from exc
    return VerifyOptions(trust=trust, crls=tuple(crls))


@dataclass(frozen=True)
class IngestSigner:
    """Signs received data sets before the spool stores them."""

    signer: Signer
    profile: str = "base"

    def sign(self, dataset: Dataset, file_meta: FileMetaDataset) -> tuple[bytes, str]:
        """The instance, signed, as DICOM file bytes, and the new signature's UID.

        Raises:
            SigningError, MacError, ValueError...: it cannot be signed (the caller stores it
                unsigned and says so).
        """
        from medforensics.provenance.sign import sign_dataset

        dataset.file_meta = file_meta
        uid = sign_dataset(dataset, self.signer, profile=self.profile)
        buffer = BytesIO()
        dataset.preamble = b"\x00" * 128
        dataset.save_as(buffer, enforce_file_format=False)
        return buffer.getvalue(), uid


@dataclass(frozen=True)
class GatewaySigning:
    """What ``[signing]`` asks for, with keys and certificates loaded."""

    config: SigningConfig
    options: VerifyOptions
    ingest: IngestSigner | None = None

    @classmethod
    def load(cls, config: SigningConfig) -> GatewaySigning:
        """Load keys, certificates, trust and CRLs; raises ``ConfigError`` naming the setting."""
        require("cryptography", "DICOM signatures in the gateway")
        options = load_verify_options(config)
        ingest = None
        if config.signs:
            signer = load_signer(config)
            _check_own_certificate(signer, options, config)
            ingest = IngestSigner(signer, config.profile)
        return cls(config, options, ingest)

    @property
    def verifies(self) -> bool:
        return self.config.verify_before_forward


def _check_own_certificate(signer: Signer, options: VerifyOptions, config: SigningConfig) -> None:
    """Refuse to start when the gateway's own signatures would not verify as valid."""
    from medforensics.provenance.certs import check_certificate

    problems = check_certificate(
        signer.certificate, signed_at=None, trust=options.trust, crls=options.crls
    )
    if problems:
        raise ConfigError(
            f"signing.cert: {config.cert}: signatures made with it would not verify as valid "
            f"against signing.trust: {'; '.join(p.message for p in problems)}"
        )


# -- on the way out ------------------------------------------------------------------------


@dataclass
class OutgoingCheck:
    """What the check of one spooled instance found.

    Attributes:
        verdict: ``valid``, ``untrusted``, ``unsigned`` or ``broken`` (``tables``).
        where: for a broken one: ``spool``, ``arrival`` or ``unknown`` (see ``WHERE``).
        changes: what changed, for people ("Pixel Data changed"...).
        notes: certificate problems of intact signatures, and other remarks.
    """

    verdict: str
    where: str | None = None
    changes: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def check_outgoing(path: Path, signature_uid: str | None, options: VerifyOptions) -> OutgoingCheck:
    """Check a spooled instance; ``signature_uid`` is the signature the gateway added, if any."""
    from medforensics.provenance.verify import verify_file

    if not path.exists():
        where = "spool" if signature_uid else "unknown"
        return OutgoingCheck(t.BROKEN, where, ["the file was removed from the spool"])
    report = verify_file(path, options)
    if report.status == "error":
        # it was read whole and decoded when it arrived: it was damaged since
        return OutgoingCheck(t.BROKEN, "spool", [f"the file is {report.error}"])
    ours = [s for s in report.signatures if signature_uid and s.uid == signature_uid]
    if signature_uid and not ours:
        return OutgoingCheck(
            t.BROKEN,
            "spool",
            [f"the signature the gateway added on arrival ({signature_uid}) was removed"],
        )
    broken = [s for s in report.signatures if not s.intact]
    if broken:
        if not signature_uid:
            where = "unknown"
        else:
            where = "spool" if any(s.uid == signature_uid for s in broken) else "arrival"
        changes: list[str] = []
        for check in broken:
            for change in check.changed or check.problems:
                if change not in changes:
                    changes.append(change)
        return OutgoingCheck(t.BROKEN, where, changes)
    if report.status == "unsigned":
        return OutgoingCheck(t.UNSIGNED)
    notes = [
        f"{check.signer or 'unknown signer'}: {problem.message}"
        for check in report.signatures
        for problem in check.certificate_problems
    ]
    return OutgoingCheck(t.UNTRUSTED if notes else t.VALID, notes=notes)


def verify_batch(spool: Spool, batch: GatewayBatch, options: VerifyOptions) -> list[dict[str, Any]]:
    """Check every received instance of ``batch`` not forwarded yet; record each verdict.

    Returns the broken ones: file name, SOPInstanceUID, where it broke and what changed.
    """
    checked: dict[int, str] = {}
    broken: list[dict[str, Any]] = []
    for row in spool.instances(batch.id, role=t.IMAGE, states=[t.SPOOLED]):
        path = spool.instance_path(batch, row)
        check = check_outgoing(path, row.signature_uid, options)
        checked[row.id] = check.verdict
        if check.verdict == t.BROKEN:
            broken.append(
                {
                    "file": path.name,
                    "sop_instance_uid": row.sop_uid,
                    "where": check.where,
                    "changes": check.changes,
                }
            )
        elif check.notes:
            LOGGER.warning("batch %s: %s: %s", batch.id, path.name, "; ".join(check.notes))
    if checked:
        spool.record_verifications(checked)
    return broken


def signature_result(broken: list[dict[str, Any]]) -> dict[str, Any]:
    """A scan-result-like entry for a batch's results: verdict.json and the alert show it."""
    findings = []
    for item in broken:
        detail = f"{item['file']}: {WHERE[item['where']]}: {'; '.join(item['changes'])}"
        findings.append(
            {
                "kind": "signature",
                "score": 1.0,
                "sop_instance_uid": item["sop_instance_uid"],
                "detail": detail,
            }
        )
    return {
        "detector": SIGNATURE_CHECK,
        "verdict": "manipulated",
        "score": 1.0,
        "findings": findings,
        "signature_problems": broken,
        "notes": [
            f"{len(broken)} instance(s) failed signature verification before forwarding: "
            "the series was quarantined instead of forwarded"
        ],
    }


def describe_problem(item: dict[str, Any]) -> str:
    """One line for the event log: the file, where, and what changed."""
    return f"{item['file']}: {WHERE[item['where']]}: {'; '.join(item['changes'])}"


# -- analysis ------------------------------------------------------------------------------


def with_signature_options(detector: Detector, config: SigningConfig) -> Detector:
    """Make the detector's signature check use ``[signing]``'s trust bundle and CRLs.

    ``auto`` builds its ``signature`` detector lazily from ``$MEDFORENSICS_TRUST`` and
    ``$MEDFORENSICS_CRL``; the gateway hands it one built from its own settings instead, so a
    scan inside the gateway checks certificates exactly as the check on the way out does.
    """
    if config.trust is None and not config.crls:
        return detector
    from medforensics.detect.auto import AutoDetector
    from medforensics.detect.signature import SignatureDetector

    trust = str(config.trust) if config.trust is not None else None
    crls = [str(path) for path in config.crls]
    if isinstance(detector, SignatureDetector):
        return SignatureDetector(trust=trust, crls=crls)
    if isinstance(detector, AutoDetector):
        # AutoDetector has no public way to hand it a configured sub-detector yet
        detector._cache["signature"] = SignatureDetector(trust=trust, crls=crls)
    return detector
