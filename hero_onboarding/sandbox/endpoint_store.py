"""Webhook endpoints registered through the API (`/v1/webhook_endpoints`), kept in the state.

Stripe's rules beyond the request schema live here: a URL that parses, at most 16 endpoints per
account and mode, at least one event type, metadata merged key by key on update, and a
`whsec_` secret that only the create answer shows. The served object is stored as served (the
secret apart, in `SandboxState.webhook_secrets`), and `delivery_targets` turns the enabled ones
into what the dispatcher delivers to, each signed with its own secret.

Departure from Stripe: any http(s) URL is accepted, localhost included. Stripe refuses URLs it
cannot reach ("must be publicly accessible"); the sandbox delivers from this machine, so local
receivers are exactly what it must reach.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from functools import cache
from importlib import resources
from typing import Any, Final

from ..primitives import Secret
from .checkout import _check_url as check_url
from .checkout import check_metadata
from .config import WebhookEndpoint
from .errors import invalid, missing_resource
from .ids import new_id
from .listing import paginate
from .objects import API_VERSION
from .params import Schema
from .state import Obj, SandboxState
from .versions import EMULATED_VERSIONS

MAX_ENDPOINTS: Final = 16  # Stripe's limit per account and mode
SECRET_PREFIX: Final = "whsec_"  # noqa: S105 (a prefix, not a value)
LIST_URL: Final = "/v1/webhook_endpoints"


@cache
def request_schemas() -> dict[str, Schema]:
    """Stripe's form schemas for create, update and list (packaged copy, see its _source).

    The copy is the 2026-07-29 spec; the SDK pins 2026-10-28.endive, which Stripe of course
    accepts as an endpoint's api_version, so it joins the enum.
    """
    text = resources.files(__package__).joinpath("webhook_endpoint_params.json").read_text()
    schemas: dict[str, Schema] = json.loads(text)
    versions = schemas["create"]["properties"]["api_version"]["enum"]
    if API_VERSION not in versions:
        versions.append(API_VERSION)
    return schemas


class EndpointStore:
    """The account's webhook endpoints: Stripe's create/retrieve/update/list/delete semantics."""

    def __init__(self, state: SandboxState, now: Callable[[], int]) -> None:
        self._state = state
        self._now = now

    def create(self, params: Obj) -> Obj:
        """A new endpoint; the answer (only this one) carries its signing secret."""
        endpoints = self._state.webhook_endpoints
        if len(endpoints) >= MAX_ENDPOINTS:
            raise invalid(
                f"You have reached the maximum of {MAX_ENDPOINTS} test webhook endpoints."
            )
        check_url(params["url"], "url")
        events = _enabled_events(params["enabled_events"])
        check_metadata(params.get("metadata"), "metadata")
        endpoint = {
            "id": new_id("we_"),
            "object": "webhook_endpoint",
            "api_version": params.get("api_version"),
            "application": None,
            "created": self._now(),
            "description": params.get("description") or None,
            "enabled_events": events,
            "livemode": False,
            "metadata": {k: v for k, v in (params.get("metadata") or {}).items() if v != ""},
            "status": "enabled",
            "url": params["url"],
        }
        secret = SECRET_PREFIX + new_id("", 32)
        endpoints[endpoint["id"]] = endpoint
        self._state.webhook_secrets[endpoint["id"]] = secret
        return with_secret(endpoint, secret)

    def retrieve(self, endpoint_id: str) -> Obj:
        found = self._state.webhook_endpoints.get(endpoint_id)
        if found is None:
            raise missing_resource("webhook endpoint", endpoint_id, param="webhook_endpoint")
        return found

    def update(self, endpoint_id: str, params: Obj, *, clear_metadata: bool) -> Obj:
        """Stripe's update: named fields replaced, metadata merged ('' deletes a key)."""
        endpoint = self.retrieve(endpoint_id)
        if "url" in params:
            check_url(params["url"], "url")
        events = _enabled_events(params["enabled_events"]) if "enabled_events" in params else None
        metadata = {} if clear_metadata else dict(endpoint["metadata"])
        for key, value in (params.get("metadata") or {}).items():
            if value == "":
                metadata.pop(key, None)
            else:
                metadata[key] = value
        check_metadata(metadata, "metadata")
        # Validated in full before anything changes: a refused update changes nothing.
        if "url" in params:
            endpoint["url"] = params["url"]
        if events is not None:
            endpoint["enabled_events"] = events
        if "description" in params:
            endpoint["description"] = params["description"] or None
        if "disabled" in params:
            endpoint["status"] = "disabled" if params["disabled"] else "enabled"
        endpoint["metadata"] = metadata
        return endpoint

    def delete(self, endpoint_id: str) -> Obj:
        self.retrieve(endpoint_id)
        del self._state.webhook_endpoints[endpoint_id]
        self._state.webhook_secrets.pop(endpoint_id, None)
        return {"id": endpoint_id, "object": "webhook_endpoint", "deleted": True}

    def list(self, query: Obj) -> Obj:
        return paginate(list(self._state.webhook_endpoints.values()), query, url=LIST_URL)


def with_secret(endpoint: Obj, secret: str) -> Obj:
    """The create answer: the object with `secret` where Stripe puts it, before `status`."""
    answer: Obj = {}
    for key, value in endpoint.items():
        if key == "status":
            answer["secret"] = secret
        answer[key] = value
    return answer


def delivery_targets(state: SandboxState) -> list[WebhookEndpoint]:
    """The enabled API-registered endpoints, as the dispatcher delivers to them.

    An endpoint may be created in any API version Stripe knows (it is only a stored property),
    but the sandbox renders one version's shapes: it delivers nothing to an endpoint of
    another, rather than label one version's objects as another's.
    """
    return [
        WebhookEndpoint(
            url=endpoint["url"],
            secrets=(Secret(state.webhook_secrets[endpoint_id]),),
            enabled_events=tuple(endpoint["enabled_events"]),
            id=endpoint_id,
            api_version=endpoint["api_version"],
        )
        for endpoint_id, endpoint in state.webhook_endpoints.items()
        if endpoint["status"] == "enabled"
        and endpoint_id in state.webhook_secrets
        and endpoint["api_version"] in (None, *EMULATED_VERSIONS)
    ]


def _enabled_events(events: list[str]) -> list[str]:
    """At least one type: an endpoint that wants nothing is refused, as Stripe does."""
    if not events:
        raise invalid(
            "You passed an empty string for 'enabled_events'. We assume empty values are an "
            "attempt to unset a parameter; however 'enabled_events' cannot be unset.",
            param="enabled_events",
            code="parameter_invalid_empty",
        )
    return list(events)


def is_metadata_cleared(tree: dict[str, Any]) -> bool:
    """`metadata=` (empty) unsets every key; the typed params lose that, the raw tree keeps it."""
    return tree.get("metadata") == ""
