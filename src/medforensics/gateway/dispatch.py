"""Carrying out a batch's actions once its outcome is known: quarantine, alert, forward, finish.

Every step is idempotent and recorded before the next one starts, so ``dispatch`` can be called
again after any crash and only does what is left: the quarantine move is a rename that is skipped
once done, the alert flag is set once sent, each forwarded instance is marked as soon as the
destination confirms it. A destination that is down defers the batch (exponential backoff); an
instance the destination refuses for good is "rejected" and its batch ends in quarantine, so no
acknowledged instance is ever dropped.

With ``[signing] verify_before_forward``, every instance still in the spool is verified first
(``signing.verify_batch``); a broken signature turns the batch into a quarantined, alerted
``manipulated`` one before anything is sent.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from medforensics.gateway import tables as t
from medforensics.gateway.alerts import Alerter, alert_payload
from medforensics.gateway.config import GatewayConfig
from medforensics.gateway.forward import Forwarder, ForwardError, Outgoing, is_success, is_transient
from medforensics.gateway.signing import (
    SIGNATURE_CHECK,
    GatewaySigning,
    describe_problem,
    signature_result,
    verify_batch,
)
from medforensics.gateway.spool import Spool
from medforensics.gateway.tables import GatewayBatch

#: what a batch with a broken signature does, whatever the policy says: never forwarded
BROKEN_SIGNATURE_ACTIONS = ("quarantine", "alert")

LOGGER = logging.getLogger("medforensics.gateway.dispatch")


class Dispatcher:
    """Applies the actions recorded on a batch."""

    def __init__(
        self,
        config: GatewayConfig,
        spool: Spool,
        forwarder: Forwarder | None,
        alerter: Alerter,
        signing: GatewaySigning | None = None,
    ) -> None:
        self.config = config
        self.spool = spool
        self.forwarder = forwarder
        self.alerter = alerter
        self.signing = signing

    def dispatch(self, batch_id: int) -> bool:
        """Do what is left for the batch; True when it is done, False when deferred."""
        batch = self.spool.batch(batch_id)
        if batch.state != t.ANALYSED:
            return batch.state == t.DONE
        actions = [a for a in batch.actions.split(",") if a]
        try:
            if self.signing is not None and self.signing.verifies:
                batch, actions = self._verify(batch, actions)
            if "quarantine" in actions:
                self.spool.quarantine(batch, self._verdict(batch, actions, self._reason(batch)))
            if "alert" in actions and not batch.alerted:
                self._alert(batch, actions)
            if "forward" in actions:
                self._forward(batch, with_results="attach" in actions)
            rejected = self.spool.instances(batch.id, role=t.IMAGE, states=[t.REJECTED])
            if rejected and batch.location != t.IN_QUARANTINE:
                self._quarantine_rejected(batch, actions, len(rejected))
            self.spool.finish(batch, keep_forwarded=self.config.keep_forwarded)
        except ForwardError as exc:
            self._defer(batch, str(exc))
            return False
        except Exception as exc:  # a full disk, a database hiccup: retry later, never drop
            LOGGER.exception("dispatch of batch %s failed", batch.id)
            self._defer(batch, f"dispatch failed ({type(exc).__name__}: {exc})")
            return False
        LOGGER.info(
            "batch %s (%s) done: %s, %s",
            batch.id,
            batch.series_uid,
            batch.outcome,
            ",".join(actions),
        )
        return True

    def _verify(self, batch: GatewayBatch, actions: list[str]) -> tuple[GatewayBatch, list[str]]:
        """Verify what is still in the spool; a broken signature overrides outcome and actions."""
        assert self.signing is not None
        broken = verify_batch(self.spool, batch, self.signing.options)
        if not broken:
            return batch, actions
        results = self._results(batch)
        if any(r.get("signature_problems") == broken for r in results):
            return batch, actions  # found and recorded by an earlier attempt
        entry = signature_result(broken)
        kept = [r for r in results if r.get("detector") != SIGNATURE_CHECK]
        for item in broken:
            message = f"signature broken: {describe_problem(item)}"
            LOGGER.error("batch %s: %s", batch.id, message)
            self.spool.log_event("error", message, batch.id)
        forwarded = self.spool.instances(batch.id, role=t.IMAGE, states=[t.FORWARDED])
        if forwarded:
            entry["notes"].append(
                f"{len(forwarded)} instance(s) of this series had been forwarded before the "
                "broken signature was found"
            )
        self.spool.override_outcome(
            batch.id,
            outcome="manipulated",
            score=1.0,
            actions=BROKEN_SIGNATURE_ACTIONS,
            results=[*kept, entry],
        )
        return self.spool.batch(batch.id), list(BROKEN_SIGNATURE_ACTIONS)

    def _defer(self, batch: GatewayBatch, error: str) -> None:
        delay = min(self.config.retry_max_s, 2.0 ** min(batch.attempts, 10))
        LOGGER.warning("batch %s deferred %.0f s: %s", batch.id, delay, error)
        self.spool.defer(batch.id, error, delay)

    def _results(self, batch: GatewayBatch) -> list[dict[str, Any]]:
        try:
            loaded = json.loads(batch.results_json or "[]")
        except json.JSONDecodeError:
            return []
        return loaded if isinstance(loaded, list) else []

    def _reason(self, batch: GatewayBatch) -> str:
        if any(r.get("detector") == SIGNATURE_CHECK for r in self._results(batch)):
            return "broken signature"
        return "policy"

    def _verdict(self, batch: GatewayBatch, actions: list[str], reason: str) -> dict[str, Any]:
        return {
            "batch": batch.id,
            "reason": reason,
            "outcome": batch.outcome,
            "score": batch.score,
            "actions": actions,
            "study_instance_uid": batch.study_uid,
            "series_instance_uid": batch.series_uid,
            "calling_ae": batch.calling_ae,
            "results": self._results(batch),
        }

    def _alert(self, batch: GatewayBatch, actions: list[str]) -> None:
        quarantine = None
        if batch.location == t.IN_QUARANTINE:
            quarantine = str(self.spool.batch_dir(batch))
        payload = alert_payload(
            batch_id=batch.id,
            outcome=batch.outcome or "error",
            score=batch.score,
            study_uid=batch.study_uid,
            series_uid=batch.series_uid,
            calling_ae=batch.calling_ae,
            instances=len(self.spool.instances(batch.id, role=t.IMAGE)),
            actions=actions,
            results=self._results(batch),
            quarantine=quarantine,
        )
        error = self.alerter.send(payload)
        if error is not None:
            self.spool.log_event("error", error, batch.id)
        self.spool.mark_alerted(batch.id)

    def _forward(self, batch: GatewayBatch, *, with_results: bool) -> None:
        pending = self.spool.instances(batch.id, role=t.IMAGE, states=[t.SPOOLED])
        if with_results:
            pending += self.spool.instances(batch.id, role=t.RESULT, states=[t.SPOOLED])
        if not pending:
            return
        if self.forwarder is None:
            raise ForwardError("no [destination] is configured: nothing can be forwarded")
        rows = {row.id: row for row in pending}
        items = [Outgoing(row.id, self.spool.instance_path(batch, row)) for row in pending]
        missing = [item for item in items if not item.path.exists()]
        for item in missing:
            # cannot happen unless someone deleted spool files; say so instead of looping
            self.spool.log_event("error", f"{item.path}: missing from the spool", batch.id)
            self.spool.mark_instance(item.key, t.REJECTED)
        transient: list[str] = []

        def record(item: Outgoing, status: int) -> None:
            if is_success(status):
                self.spool.mark_instance(item.key, t.FORWARDED, status)
            elif is_transient(status):
                transient.append(f"{item.path.name}: 0x{status:04X}")
            else:
                row = rows[item.key]
                self.spool.mark_instance(item.key, t.REJECTED, status)
                self.spool.log_event(
                    "error",
                    f"destination {self.forwarder} refused {row.role} {row.sop_uid} "
                    f"with status 0x{status:04X}",
                    batch.id,
                )

        self.forwarder.send([item for item in items if item not in missing], record)
        if transient:
            raise ForwardError(
                f"destination {self.forwarder} is short of resources; will retry "
                f"({len(transient)} instance(s), e.g. {transient[0]})"
            )

    def _quarantine_rejected(self, batch: GatewayBatch, actions: list[str], count: int) -> None:
        """Keep what the destination refused: forwarded files go, the refused ones stay."""
        for row in self.spool.instances(batch.id, role=t.IMAGE, states=[t.FORWARDED]):
            self.spool.instance_path(batch, row).unlink(missing_ok=True)
        reason = f"the destination refused {count} instance(s)"
        self.spool.quarantine(batch, self._verdict(batch, actions, reason))
        self.spool.log_event("error", f"batch quarantined: {reason}", batch.id)
