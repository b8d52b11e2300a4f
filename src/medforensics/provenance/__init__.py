"""Provenance: DICOM digital signatures (PS3.15 Annex C) and a hash-chained audit log.

* ``sign``: ``Signer``, ``sign_dataset``, ``sign_file`` — signatures DCMTK's ``dcmsign`` verifies;
* ``verify``: ``verify_file``, ``verify_dataset``, ``VerifyOptions`` — ours and other tools';
* ``certs``: keys, certificates, CRLs, trust checks, and ``generate_site`` (a site CA);
* ``audit``: ``AuditLog``, ``record_scan_result`` — who analysed what, when, with what result;
* ``mac``, ``profiles``, ``digests``: the MAC byte stream, what is signed, per-element digests.

Signing and verifying need the ``provenance`` extra (``cryptography``); names are imported
lazily so that ``medforensics.provenance.audit`` works with SQLAlchemy alone.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "Signer": "sign",
    "SigningError": "sign",
    "sign_dataset": "sign",
    "sign_file": "sign",
    "VerifyOptions": "verify",
    "FileVerification": "verify",
    "SignatureCheck": "verify",
    "verify_dataset": "verify",
    "verify_file": "verify",
    "generate_site": "certs",
    "AuditLog": "audit",
    "AuditEntry": "audit",
    "AuditReport": "audit",
    "record_scan_result": "audit",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
