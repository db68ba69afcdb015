"""Stripe's error shape: `{"error": {type, code, message, param, ...}}` with Stripe's status."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

from ..errors import ErrorAnswer

DOC_URL: Final = "https://docs.stripe.com/error-codes"


@dataclass
class StripeApiError(ErrorAnswer):
    """Raised anywhere under /v1; the API middleware renders it as Stripe would."""

    status: int
    message: str
    type: str = "invalid_request_error"
    code: str | None = None
    param: str | None = None

    def __str__(self) -> str:
        return self.message

    def body(self, request_id: str) -> dict[str, Any]:
        error: dict[str, Any] = {"type": self.type, "message": self.message}
        if self.code is not None:
            error["code"] = self.code
            error["doc_url"] = f"{DOC_URL}#{self.code.replace('_', '-')}"
        if self.param is not None:
            error["param"] = self.param
        error["request_log_url"] = f"https://dashboard.stripe.com/test/logs/{request_id}"
        return {"error": error}


def invalid(message: str, *, param: str | None = None, code: str | None = None) -> StripeApiError:
    """A 400 `invalid_request_error`, the answer to most bad requests."""
    return StripeApiError(400, message, code=code, param=param)


def missing_resource(kind: str, resource_id: str, param: str = "id") -> StripeApiError:
    return StripeApiError(
        404, f"No such {kind}: '{resource_id}'", code="resource_missing", param=param
    )
