"""Disputes as Stripe's test mode runs them: opened by the issuer, won, lost or closed.

A chargeback opens `needs_response` (`charge.dispute.created`) and takes the money
(`charge.dispute.funds_withdrawn`); winning closes it `won` (`charge.dispute.closed`) and gives
the money back (`charge.dispute.funds_reinstated`); losing closes it `lost`. An inquiry opens
`warning_needs_response`, moves no money, and closes `warning_closed`. Submitting evidence
(POST /v1/disputes/{id}) moves either to its `..._under_review` (`charge.dispute.updated`).
The charge says
`disputed: true` from the opening on (docs.stripe.com/testing#disputes,
docs.stripe.com/disputes/how-disputes-work).
"""

from __future__ import annotations

import builtins
import copy
from typing import TYPE_CHECKING, Final

from . import objects
from .checkout import check_metadata
from .errors import invalid, missing_resource
from .listing import in_range, paginate
from .state import Obj

if TYPE_CHECKING:
    from .engine import RequestMeta, Sandbox

EVIDENCE_WINDOW_S: Final = 7 * 86400
INQUIRY_REASON: Final = "general"
REASONS: Final = (
    "bank_cannot_process", "check_returned", "credit_not_processed", "customer_initiated",
    "debit_not_authorized", "duplicate", "fraudulent", "general", "incorrect_account_details",
    "insufficient_funds", "noncompliant", "product_not_received", "product_unacceptable",
    "subscription_canceled", "unrecognized",
)  # fmt: skip
OPEN: Final = frozenset({"needs_response", "under_review"})
OPEN_INQUIRY: Final = frozenset({"warning_needs_response", "warning_under_review"})
SUBMITTED: Final = {
    "needs_response": "under_review",
    "warning_needs_response": "warning_under_review",
}


class Disputes:
    """The disputes of one sandbox; changes go through the engine's `emit`."""

    def __init__(self, sandbox: Sandbox) -> None:
        self._sandbox = sandbox
        self._state = sandbox.state

    def get(self, dispute_id: str, param: str = "dispute") -> Obj:
        dispute = self._state.disputes.get(dispute_id)
        if dispute is None:
            raise missing_resource("dispute", dispute_id, param=param)
        return dispute

    def list(self, query: Obj) -> Obj:
        def keep(dispute: Obj) -> bool:
            return (
                query.get("charge", dispute["charge"]) == dispute["charge"]
                and query.get("payment_intent", dispute["payment_intent"])
                == dispute["payment_intent"]
                and in_range(dispute["created"], query.get("created"))
            )

        return paginate(
            [d for d in self._state.disputes.values() if keep(d)], query, url="/v1/disputes"
        )

    def open(self, charge: Obj, *, amount: int | None, reason: str, inquiry: bool) -> Obj:
        """The cardholder's bank disputes `amount` (default: what is not refunded) of a charge."""
        if charge["status"] != "succeeded":
            raise invalid(f"Charge {charge['id']} has not succeeded; it cannot be disputed")
        if any(d["status"] in OPEN | OPEN_INQUIRY for d in self._of(charge["id"])):
            raise invalid(f"Charge {charge['id']} already has an open dispute", param="charge")
        disputable = charge["amount"] - charge["amount_refunded"]
        if disputable <= 0:
            raise invalid(
                f"Charge {charge['id']} is fully refunded; refunded charges cannot be disputed",
                param="charge",
            )
        amount = disputable if amount is None else amount
        if not 1 <= amount <= disputable:
            raise invalid(
                f"Dispute amount ({amount}) must be between 1 and the charge's unrefunded "
                f"amount ({disputable})",
                param="amount",
            )
        now = self._sandbox.now()
        dispute = objects.dispute(
            created=now,
            charge_obj=charge,
            amount=amount,
            reason=INQUIRY_REASON if inquiry else reason,
            inquiry=inquiry,
            due_by=now + EVIDENCE_WINDOW_S,
        )
        dispute["is_charge_refundable"] = inquiry  # a chargeback already took the money
        self._state.disputes[dispute["id"]] = dispute
        charge["disputed"] = True
        self._sandbox.emit("charge.dispute.created", dispute)
        if not inquiry:
            self._move_funds(dispute, -amount, "Chargeback withdrawal", "dispute")
            self._sandbox.emit("charge.dispute.funds_withdrawn", dispute)
        return dispute

    def update(self, dispute_id: str, params: Obj, meta: RequestMeta) -> Obj:
        """Stripe's POST /v1/disputes/{id}: stage evidence, and submit it (the default)."""
        dispute = self.get(dispute_id)
        if dispute["status"] not in SUBMITTED:
            raise invalid(
                f"Dispute {dispute_id} is {dispute['status']}: evidence can only be added while "
                "it needs a response",
                param="dispute",
            )
        check_metadata(params.get("metadata"), "metadata")
        previous: Obj = {}
        evidence = params.get("evidence") or {}
        if evidence:
            previous["evidence"] = copy.deepcopy(dispute["evidence"])
            dispute["evidence"].update(evidence)
            if not dispute["evidence_details"]["has_evidence"]:
                previous["evidence_details"] = copy.deepcopy(dispute["evidence_details"])
            dispute["evidence_details"]["has_evidence"] = True
        if "metadata" in params:
            previous["metadata"] = dispute["metadata"]
            dispute["metadata"] = dict(params["metadata"] or {})
        if params.get("submit", True):
            previous["status"] = dispute["status"]
            previous.setdefault("evidence_details", copy.deepcopy(dispute["evidence_details"]))
            dispute["status"] = SUBMITTED[dispute["status"]]
            dispute["evidence_details"]["submission_count"] += 1
        if previous:
            self._sandbox.emit("charge.dispute.updated", dispute, meta, previous)
        return dispute

    def win(self, dispute_id: str) -> Obj:
        dispute = self.get(dispute_id)
        if dispute["status"] in OPEN_INQUIRY:
            return self._close(dispute, "warning_closed")
        self._require_open(dispute)
        self._close(dispute, "won")
        self._move_funds(dispute, dispute["amount"], "Chargeback reversal", "dispute_reversal")
        self._sandbox.emit("charge.dispute.funds_reinstated", dispute)
        return dispute

    def lose(self, dispute_id: str, meta: RequestMeta | None = None) -> Obj:
        """The bank rules for the cardholder, or the merchant accepts (POST .../close)."""
        dispute = self.get(dispute_id)
        if dispute["status"] in OPEN_INQUIRY:
            return self._close(dispute, "warning_closed", meta)
        self._require_open(dispute)
        return self._close(dispute, "lost", meta)

    def _require_open(self, dispute: Obj) -> None:
        if dispute["status"] not in OPEN:
            raise invalid(
                f"Dispute {dispute['id']} is already closed ({dispute['status']})",
                param="dispute",
            )

    def _close(self, dispute: Obj, status: str, meta: RequestMeta | None = None) -> Obj:
        previous = {"status": dispute["status"]}
        dispute["status"] = status
        self._sandbox.emit("charge.dispute.closed", dispute, meta, previous)
        return dispute

    def _move_funds(self, dispute: Obj, amount: int, description: str, category: str) -> None:
        dispute["balance_transactions"].append(
            objects.balance_transaction(
                created=self._sandbox.now(),
                amount=amount,
                currency=dispute["currency"],
                source=dispute["id"],
                description=f"{description} for {dispute['charge']}",
                category=category,
            )
        )

    def _of(self, charge_id: str) -> builtins.list[Obj]:
        return [d for d in self._state.disputes.values() if d["charge"] == charge_id]
