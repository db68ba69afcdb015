"""Who is asking: the client's address, through a trusted reverse proxy when there is one."""

from __future__ import annotations

import ipaddress

from aiohttp import web

from ..config import Network
from .keys import SETTINGS


def client_address(request: web.Request) -> str:
    """Who is asking: the TCP peer, or, from a trusted reverse proxy, what it saw.

    The header is believed only from a peer in --trusted-proxies; with X-Forwarded-For only its
    last entry, the one the proxy added; the ones before it are whatever the client sent.
    """
    settings = request.app[SETTINGS]
    peer = request.remote or "unknown"
    if settings.client_ip_header and within(peer, settings.trusted_proxies):
        forwarded = request.headers.get(settings.client_ip_header, "").split(",")[-1].strip()
        try:
            return str(ipaddress.ip_address(forwarded))
        except ValueError:
            pass
    return peer


def within(address: str, networks: tuple[Network, ...]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in networks)
