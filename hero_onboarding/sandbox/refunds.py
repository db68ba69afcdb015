"""Refunds as Stripe runs them: created, pending, succeeded, failed, canceled, with their events.

A charge's `amount_refunded` is the sum of its refunds that are not failed or canceled: Stripe
returns a failed refund's money to the merchant's balance ("If a refund fails, Stripe returns the
funds to your Stripe balance", docs.stripe.com/refunds#failed-refunds), so the charge no longer
counts it, and `refunded` goes back to false. Pending and requires_action refunds count: the
money is promised. Events follow Stripe's names and objects: `charge.refunded` carries the
charge, `refund.*` and `charge.refund.updated` carry the refund.
"""

from __future__ import annotations

import builtins
from typing import TYPE_CHECKING, Final

from . import objects
from .checkout import check_metadata
from .errors import StripeApiError, invalid, missing_resource
from .listing import in_range, paginate
from .state import Obj

if TYPE_CHECKING:
    from .engine import RequestMeta, Sandbox

COUNTED: Final = frozenset({"pending", "requires_action", "succeeded"})
STATUSES: Final = ("pending", "requires_action", "succeeded")  # what a new refund may start as
FAILURE_REASONS: Final = (
    "charge_for_pending_refund_disputed", "declined", "expired_or_canceled_card",
    "insufficient_funds", "lost_or_stolen_card", "merchant_request", "unknown",
)  # fmt: skip
# Chargeback statuses under which Stripe refuses a refund (the issuer holds the money).
CHARGED_BACK: Final = frozenset({"needs_response", "under_review", "lost"})


class Refunds:
    """The refunds of one sandbox; changes go through the engine's `emit`."""

    def __init__(self, sandbox: Sandbox) -> None:
        self._sandbox = sandbox
        self._state = sandbox.state

    def get(self, refund_id: str, param: str = "refund") -> Obj:
        refund = self._state.refunds.get(refund_id)
        if refund is None:
            raise missing_resource("refund", refund_id, param=param)
        return refund

    def create(self, params: Obj, meta: RequestMeta, status: str = "succeeded") -> Obj:
        """A refund of `amount` (default: what is left) of a payment intent's or charge's money."""
        charge = self._sandbox.charge_of(params)
        if charge["status"] != "succeeded":
            raise invalid(
                f"Charge {charge['id']} has not succeeded, so it cannot be refunded",
                param="charge",
            )
        if any(d["status"] in CHARGED_BACK for d in self._disputes_of(charge["id"])):
            raise StripeApiError(
                400,
                f"Charge {charge['id']} has been charged back; cannot issue a refund.",
                code="charge_disputed",
            )
        remaining = charge["amount"] - charge["amount_refunded"]
        if remaining <= 0:
            raise StripeApiError(
                400,
                f"Charge {charge['id']} has already been refunded.",
                code="charge_already_refunded",
            )
        check_metadata(params.get("metadata"), "metadata")
        amount = params.get("amount", remaining)
        if amount < 1 or amount > remaining:
            raise invalid(
                f"Refund amount ({amount}) must be between 1 and the unrefunded amount on the "
                f"charge ({remaining}).",
                param="amount",
                code="amount_too_large" if amount > remaining else None,
            )
        refund = objects.refund(
            created=self._sandbox.now(),
            charge_obj=charge,
            amount=amount,
            reason=params.get("reason"),
            meta=params.get("metadata") or {},
            status=status,
        )
        self._state.refunds[refund["id"]] = refund
        previous = self._recount(charge)
        self._sandbox.emit("refund.created", refund, meta)
        self._sandbox.emit("charge.refunded", charge, meta, previous)
        failure = self._state.charge_behaviours.get(charge["id"], {}).get("refund_failure")
        if failure is not None:  # test card 4000 0000 0000 5126: succeeds, then fails
            self._state.refund_transitions[refund["id"]] = {
                "status": "failed",
                "failure_reason": failure,
                "due_at": self._sandbox.clock(),
            }
        return refund

    def list(self, query: Obj) -> Obj:
        def keep(refund: Obj) -> bool:
            return (
                query.get("charge", refund["charge"]) == refund["charge"]
                and query.get("payment_intent", refund["payment_intent"])
                == refund["payment_intent"]
                and in_range(refund["created"], query.get("created"))
            )

        return paginate(
            [r for r in self._state.refunds.values() if keep(r)], query, url="/v1/refunds"
        )

    def fail(self, refund_id: str, failure_reason: str = "unknown") -> Obj:
        """The bank gave the money back: failed, and the charge's refunded total drops."""
        refund = self.get(refund_id)
        if refund["status"] not in COUNTED:
            raise invalid(
                f"Refund {refund_id} is {refund['status']}; only pending, requires_action or "
                "succeeded refunds can fail",
                param="refund",
            )
        self._state.refund_transitions.pop(refund_id, None)
        previous = {"status": refund["status"]}
        refund.update(status="failed", failure_reason=failure_reason)
        self._recount(self._sandbox.charge(refund["charge"]))
        self._sandbox.emit("refund.failed", refund)
        self._announce(refund, previous)
        return refund

    def succeed(self, refund_id: str) -> Obj:
        """A pending refund goes through."""
        refund = self.get(refund_id)
        if refund["status"] != "pending":
            raise invalid(
                f"Refund {refund_id} is {refund['status']}; only a pending refund can succeed",
                param="refund",
            )
        self._state.refund_transitions.pop(refund_id, None)
        refund["status"] = "succeeded"
        self._announce(refund, {"status": "pending"})
        return refund

    def cancel(self, refund_id: str, meta: RequestMeta) -> Obj:
        """Stripe's POST /v1/refunds/{id}/cancel: only a refund that requires action."""
        refund = self.get(refund_id)
        if refund["status"] != "requires_action":
            raise invalid(
                "You can only cancel refunds with a status of requires_action.",
                param="refund",
            )
        self._state.refund_transitions.pop(refund_id, None)
        refund["status"] = "canceled"
        self._recount(self._sandbox.charge(refund["charge"]))
        self._announce(refund, {"status": "requires_action"}, meta)
        return refund

    def run_due(self, now: float) -> builtins.list[float]:
        """Move refunds whose scheduled change fell due; return when the others fall due."""
        upcoming: builtins.list[float] = []
        for refund_id, change in list(self._state.refund_transitions.items()):
            if change["due_at"] > now:
                upcoming.append(change["due_at"])
                continue
            del self._state.refund_transitions[refund_id]
            status = self._state.refunds[refund_id]["status"]
            if change["status"] == "failed" and status in COUNTED:
                self.fail(refund_id, change["failure_reason"])
            elif change["status"] == "succeeded" and status == "pending":
                self.succeed(refund_id)
            # else: a control got there first (a refund failed or canceled by hand)
        return upcoming

    def _announce(self, refund: Obj, previous: Obj, meta: RequestMeta | None = None) -> None:
        self._sandbox.emit("refund.updated", refund, meta, previous)
        self._sandbox.emit("charge.refund.updated", refund, meta, previous)

    def _recount(self, charge: Obj) -> Obj:
        """Set the charge's refunded total from its refunds; return the previous values."""
        previous = {"amount_refunded": charge["amount_refunded"], "refunded": charge["refunded"]}
        charge["amount_refunded"] = sum(
            r["amount"]
            for r in self._state.refunds.values()
            if r["charge"] == charge["id"] and r["status"] in COUNTED
        )
        charge["refunded"] = charge["amount_refunded"] == charge["amount"]
        return previous

    def _disputes_of(self, charge_id: str) -> builtins.list[Obj]:
        return [d for d in self._state.disputes.values() if d["charge"] == charge_id]
