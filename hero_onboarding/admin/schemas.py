"""What the admin methods take, answer and fail with, as JSON Schemas and error specs: the
OpenRPC document shows these, and the registry checks every call's parameters against them.
"""

from __future__ import annotations

from typing import Any, Final

from ..billing import Outcome
from ..rpc.registry import ErrorSpec, Param
from ..store.checkouts import CheckoutStatus
from ..store.ledger import EntryKind
from ..store.reconcile_runs import RunOutcome, Trigger

Json = Any

NOT_FOUND: Final = ErrorSpec(-32004, "no such user")
KEY_REUSED: Final = ErrorSpec(-32010, "idempotency key already used with other values")
WOULD_GO_NEGATIVE: Final = ErrorSpec(-32011, "the balance would go negative")
NO_PROVIDER: Final = ErrorSpec(-32012, "no payment provider configured")
PROVIDER_DOWN: Final = ErrorSpec(-32013, "the payment provider could not be asked")
UNCERTAIN: Final = ErrorSpec(
    -32014, "the database did not confirm in time: retry with the same idempotency key"
)
UNAVAILABLE: Final = ErrorSpec(-32015, "the database is unavailable")
RUN_IN_PROGRESS: Final = ErrorSpec(
    -32016, "a reconciliation run is in progress: try again when it has finished"
)

# -- schemas (the OpenRPC document shows these) ----------------------------------------------

SID: Final = {"type": "string", "minLength": 1, "maxLength": 64}
UNIX_TIME: Final = {"type": "integer", "minimum": 0, "maximum": 2**40}
PAGE: Final = (
    Param("limit", {"type": "integer", "minimum": 1, "maximum": 500, "default": 50}, "page size"),
    Param(
        "offset", {"type": "integer", "minimum": 0, "maximum": 10**9, "default": 0}, "rows to skip"
    ),
)
INT: Final = {"type": "integer"}
TEXT: Final = {"type": "string"}
MAYBE_TEXT: Final = {"type": ["string", "null"]}
MAYBE_INT: Final = {"type": ["integer", "null"]}


def object_schema(required: list[str], **properties: Json) -> dict[str, Json]:
    return {"type": "object", "required": required, "properties": properties}


def list_schema(name: str, item: dict[str, Json], **more: Json) -> dict[str, Json]:
    array = {"type": "array", "items": item}
    return object_schema([name, *more], **{name: array}, **more)


USER: Final = object_schema(
    ["sid", "mycelium_address", "created_at"], sid=TEXT, mycelium_address=TEXT, created_at=INT
)
BALANCE: Final = object_schema(
    ["sid", "balance", "currency", "formatted", "updated_at"],
    sid=TEXT, balance=INT, currency=TEXT, formatted=TEXT, updated_at=INT,
)  # fmt: skip
PAYMENT: Final = object_schema(
    ["id", "sid", "provider", "kind", "external_ref", "amount", "currency", "created_at"],
    id=INT, sid=TEXT, provider=TEXT, kind={"enum": [k.value for k in EntryKind]},
    external_ref=TEXT, amount=INT, currency=TEXT, event_id=MAYBE_TEXT, checkout_id=MAYBE_TEXT,
    created_at=INT,
)  # fmt: skip
CHECKOUT: Final = object_schema(
    ["id", "sid", "provider", "amount", "currency", "status", "created_at"],
    id=TEXT, sid=TEXT, provider=TEXT, amount=INT, currency=TEXT,
    status={"enum": [s.value for s in CheckoutStatus]}, url=MAYBE_TEXT, created_at=INT,
    expires_at=MAYBE_INT, completed_at=MAYBE_INT,
)  # fmt: skip
DELIVERY_OUTCOMES: Final = [*(o.value for o in Outcome), "rejected", "error"]
DELIVERY: Final = object_schema(
    ["received_at", "provider", "verified", "outcome"],
    received_at=INT, provider=TEXT, verified={"type": "boolean"},
    outcome={"enum": DELIVERY_OUTCOMES}, detail=TEXT, event_id=MAYBE_TEXT, type=MAYBE_TEXT,
)  # fmt: skip
DISPUTE: Final = object_schema(
    ["id", "provider", "payment", "amount", "currency", "status", "sid", "opened_at"],
    id=TEXT, provider=TEXT, payment=TEXT, amount=INT, currency=TEXT, status=TEXT,
    sid=MAYBE_TEXT, opened_at=INT, updated_at=INT,
)  # fmt: skip
ADJUSTED: Final = object_schema(
    ["sid", "amount", "currency", "balance", "formatted", "idempotency_key", "audit_id",
     "replayed"],
    sid=TEXT, amount=INT, currency=TEXT, balance=INT, formatted=TEXT, idempotency_key=TEXT,
    audit_id=INT, replayed={"type": "boolean"},
)  # fmt: skip
RECONCILED: Final = object_schema(
    ["run_id", "since", "checked", "credited", "reversed", "already_done", "not_credited"],
    run_id=INT, since=INT, checked=INT, already_done=INT,
    credited={"type": "array", "items": {"type": "object"}},
    reversed={"type": "array", "items": {"type": "object"}},
    not_credited={"type": "array", "items": {"type": "object"}},
)  # fmt: skip
RUN: Final = object_schema(
    ["id", "trigger", "actor", "started_at", "outcome", "since"],
    id=INT, trigger={"enum": [t.value for t in Trigger]}, actor=TEXT, started_at=INT,
    finished_at=MAYBE_INT, outcome={"enum": [o.value for o in RunOutcome]}, since=INT,
    counts={"type": ["object", "null"]}, error=MAYBE_TEXT,
)  # fmt: skip
MAYBE_RUN: Final = {"oneOf": [RUN, {"type": "null"}]}
RECONCILE_STATUS: Final = object_schema(
    ["schedule", "interval_s", "window_s", "running", "last_run", "last_success", "next_due"],
    schedule=TEXT, interval_s=INT, window_s=INT, running=MAYBE_RUN, last_run=MAYBE_RUN,
    last_success=MAYBE_RUN, next_due=MAYBE_INT,
)  # fmt: skip
