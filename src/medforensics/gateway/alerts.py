"""Alerts for suspicious series: one structured log line, and a JSON POST to a webhook.

The payload names the series by its UIDs and says what was found and where the series went; it
carries no patient name or ID. A webhook that is down or slow never holds the series back: the
POST has a bounded timeout, is tried twice, and a failure is recorded for ``gateway status``.
"""

from __future__ import annotations

import json
import logging
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from typing import Any

from medforensics.__about__ import __version__

LOGGER = logging.getLogger("medforensics.gateway.alert")
EVENT = "medforensics.gateway.flagged"
ATTEMPTS = 2


def alert_payload(
    *,
    batch_id: int,
    outcome: str,
    score: float | None,
    study_uid: str,
    series_uid: str,
    calling_ae: str,
    instances: int,
    actions: list[str],
    results: Sequence[Mapping[str, Any]],
    quarantine: str | None,
) -> dict[str, Any]:
    """The alert's JSON body (no patient name or ID)."""
    findings = []
    for result in results:
        for finding in result.get("findings") or []:
            findings.append(
                {
                    key: finding.get(key)
                    for key in ("kind", "score", "slice", "row", "col", "sop_instance_uid")
                }
                | ({"detail": finding.get("detail")} if finding.get("kind") == "signature" else {})
            )
    findings.sort(key=lambda f: -(f.get("score") or 0.0))
    payload: dict[str, Any] = {
        "event": EVENT,
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "tool": f"medforensics {__version__}",
        "batch": batch_id,
        "outcome": outcome,
        "score": score,
        "study_instance_uid": study_uid,
        "series_instance_uid": series_uid,
        "calling_ae": calling_ae,
        "instances": instances,
        "actions": actions,
        "quarantine": quarantine,
        "detector": next((r.get("detector") for r in results if r.get("detector")), None),
        "errors": [r["error"] for r in results if r.get("error")],
        "findings": findings[:10],
    }
    # broken signatures: file name, SOPInstanceUID, where it broke, which attributes changed
    signatures = [item for r in results for item in r.get("signature_problems") or []]
    if signatures:
        payload["signatures"] = signatures
    return payload


class Alerter:
    """Logs every alert; POSTs it to ``webhook_url`` when one is set."""

    def __init__(self, webhook_url: str | None = None, timeout_s: float = 5.0) -> None:
        if webhook_url and not webhook_url.lower().startswith(("http://", "https://")):
            raise ValueError(f"alerts.webhook_url must be http(s), got {webhook_url!r}")
        self.webhook_url = webhook_url
        self.timeout_s = timeout_s

    def send(self, payload: Mapping[str, Any]) -> str | None:
        """Raise the alert; returns why the webhook failed, or None."""
        body = json.dumps(payload, default=str, sort_keys=True)
        LOGGER.warning("ALERT %s", body, extra={"alert": dict(payload)})
        if not self.webhook_url:
            return None
        error = None
        for attempt in range(ATTEMPTS):
            error = self._post(body.encode("utf-8"))
            if error is None:
                return None
            if attempt + 1 < ATTEMPTS:
                time.sleep(min(1.0, self.timeout_s))
        LOGGER.error("alert webhook %s failed: %s", self.webhook_url, error)
        return f"alert webhook {self.webhook_url} failed: {error}"

    def _post(self, body: bytes) -> str | None:
        assert self.webhook_url is not None
        request = urllib.request.Request(
            self.webhook_url,
            data=body,
            method="POST",
            headers={
                "Content-Type": "application/json",
                "User-Agent": f"medforensics/{__version__}",
            },
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                if not 200 <= response.status < 300:
                    return f"HTTP {response.status}"
        except urllib.error.HTTPError as exc:
            return f"HTTP {exc.code}"
        except (urllib.error.URLError, TimeoutError, OSError) as exc:
            return str(getattr(exc, "reason", exc))
        return None
