"""Rows as the admin methods answer them: JSON objects in the shapes schemas.py describes."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from ..money import format_amount
from ..store import balances, checkouts, ledger, reconcile_runs, reversals, users
from ..store.ledger import LedgerEntry


def run_json(run: reconcile_runs.ReconcileRun | None) -> dict[str, Any] | None:
    return None if run is None else run.as_json()


def user_json(user: users.User) -> dict[str, Any]:
    return {
        "sid": user.sid,
        "mycelium_address": user.mycelium_address,
        "created_at": user.created_at,
    }


def balance_json(balance: balances.Balance) -> dict[str, Any]:
    return {
        "sid": balance.sid,
        "balance": balance.credit_balance,
        "currency": balance.currency,
        "formatted": format_amount(balance.credit_balance, balance.currency),
        "updated_at": balance.updated_at,
    }


def payment_json(row: ledger.RecordedEntry) -> dict[str, Any]:
    entry = row.entry
    return {
        "id": row.id,
        "sid": entry.sid,
        "provider": entry.provider,
        "kind": entry.kind.value,
        "external_ref": entry.external_ref,
        "amount": entry.amount,
        "currency": entry.currency,
        "event_id": entry.event_id,
        "checkout_id": entry.checkout_id,
        "created_at": row.created_at,
    }


def dispute_json(dispute: reversals.Reversal, purchase: LedgerEntry | None) -> dict[str, Any]:
    return {
        "id": dispute.ref,
        "provider": dispute.provider,
        "payment": dispute.payment_ref,
        "amount": dispute.amount,
        "currency": dispute.currency,
        "status": dispute.status,
        "sid": purchase.sid if purchase else None,
        "opened_at": dispute.first_seen,
        "updated_at": dispute.updated_at,
    }


def checkout_json(checkout: checkouts.CheckoutSession) -> dict[str, Any]:
    return {**asdict(checkout), "status": checkout.status.value}
