"""Which Stripe API versions the sandbox answers in, and its refusal of every other one.

The sandbox renders its objects in one version: the one stripe-python 16.x pins. Older
versions (2024-06-20, 2025-03-31.basil) differ in object shapes the sandbox cannot check here
(our OpenAPI subset is 2026-07-29.dahlia, plus the endive keys the SDK shows), so answering
them would be answering in another version without saying so. Those are refused instead, as
Stripe refuses a version it does not know: 400 `invalid_request_error`.
"""

from __future__ import annotations

import re
from typing import Final

from .errors import StripeApiError
from .objects import API_VERSION

EMULATED_VERSIONS: Final = frozenset({API_VERSION})
_WELL_FORMED: Final = re.compile(r"^\d{4}-\d{2}-\d{2}(\.[a-z]+)?$")


def check_version(version: str) -> str:
    """`version` if the sandbox renders it, else Stripe's 400 for a version it cannot use."""
    if version in EMULATED_VERSIONS:
        return version
    shown = version[:60]
    if _WELL_FORMED.match(version):
        message = (
            f"Invalid Stripe API version: {shown}. The sandbox renders objects in API version "
            f"{API_VERSION} only; send that Stripe-Version (or none), or test {shown} against "
            "Stripe's test mode."
        )
    else:
        message = f"Invalid Stripe API version: {shown}"
    raise StripeApiError(400, message)
