"""Who is calling: the client's network address, the same for throttling, login lock-outs and /metrics.

With no proxy in front (``API_NUM_PROXIES=0``, the default) it is the peer's
address, ``REMOTE_ADDR``; a client cannot change it with a header. Behind
``n`` proxies it is the ``n``-th entry of ``X-Forwarded-For`` from the right:
the address the outermost trusted proxy saw, which the client cannot choose
either. This is the rule of DRF's throttles (``NUM_PROXIES``), so a client
counts as the same one everywhere.
"""

import ipaddress

from django.http import HttpRequest
from rest_framework.request import Request
from rest_framework.settings import api_settings

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def parse_ip(raw: str | None) -> IPAddress | None:
    """An address as text (a peer's, a header's), or None when it is not one."""
    if not raw:
        return None
    try:
        address = ipaddress.ip_address(raw.strip())
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped  # a dual-stack socket's ::ffff:10.0.0.1 is 10.0.0.1
    return address


def client_ip(request: HttpRequest | Request) -> IPAddress | None:
    """The client's address, or None when the request carries no usable one."""
    remote = request.META.get("REMOTE_ADDR")
    forwarded = request.META.get("HTTP_X_FORWARDED_FOR")
    num_proxies = api_settings.NUM_PROXIES or 0
    if num_proxies == 0 or not forwarded:
        return parse_ip(remote)
    hops = forwarded.split(",")
    # A value that is not an address means a proxy we trust did not write it: fall back to the peer.
    return parse_ip(hops[-min(num_proxies, len(hops))]) or parse_ip(remote)


def client_address(request: HttpRequest | Request) -> str | None:
    """``client_ip`` as text (django-axes' ``AXES_CLIENT_IP_CALLABLE``)."""
    address = client_ip(request)
    return None if address is None else str(address)
