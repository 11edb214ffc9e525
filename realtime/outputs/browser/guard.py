"""Who may talk to the browser view: the page's own origin, on a host name we serve, with the token if set.

The threat is a web page the presenter has open in another tab. It can send
requests to 127.0.0.1 (a form post, an image tag) and, through DNS rebinding,
make its own host name resolve to us. So every route that reads or changes
anything checks: the Host header names a host we serve (loopback, the bound
address, this machine's name, or an IP literal: a rebinding attack needs a
name); no foreign Origin, and no cross-site Sec-Fetch-Site; control requests
are application/json (a form cannot send that without a CORS preflight, which
we never answer). On a non-loopback address a `--token` keeps the rest of the
network out: the page is opened once with ?token=..., which sets a cookie.
"""

from __future__ import annotations

import hmac
import ipaddress
import socket
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

TOKEN_COOKIE = "gradcam_token"
LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True)
class Policy:
    """What the guard allows; `token` None means no token is asked for."""

    hosts: frozenset[str]
    token: str | None = None


def policy_for(bound_host: str, token: str | None = None, extra_hosts: Iterable[str] = ()) -> Policy:
    names = set(LOOPBACK_NAMES) | {bound_host.lower(), socket.gethostname().lower(), *extra_hosts}
    return Policy(frozenset(names), token)


def is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return host.lower() == "localhost"


def _host_name(header: str) -> str:
    """'example.com:8080' -> 'example.com'; '[::1]:8080' -> '::1'."""
    if header.startswith("["):
        return header[1 : header.find("]")].lower()
    return header.rsplit(":", 1)[0].lower() if header.count(":") == 1 else header.lower()


def _ip_literal(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
        return True
    except ValueError:
        return False


def refusal(request: web.Request, policy: Policy) -> web.Response | None:
    """A 403/415 response for a request the policy refuses, or None to let it through."""
    host = _host_name(request.headers.get("Host", ""))
    if not host or not (host in policy.hosts or _ip_literal(host)):
        return _deny(403, f"host {host!r} is not served here; open the page by its address")
    origin = request.headers.get("Origin")
    own = f"{request.scheme}://{request.headers.get('Host', '')}"
    if origin is not None and origin != own:
        return _deny(403, "requests from other sites are refused")
    if request.headers.get("Sec-Fetch-Site", "same-origin") not in ("same-origin", "none"):
        return _deny(403, "requests from other sites are refused")
    if request.method == "POST" and request.content_type != "application/json":
        return _deny(415, "send control requests as application/json")
    if policy.token is not None and not is_loopback(request.remote or ""):
        offered = (
            request.query.get("token")
            or request.cookies.get(TOKEN_COOKIE)
            or request.headers.get("Authorization", "").removeprefix("Bearer ")
        )
        if not offered or not token_matches(offered, policy.token):
            return _deny(403, "this view needs its token: open it as /?token=... (see --token)")
    return None


def token_matches(offered: str, token: str) -> bool:
    """In constant time; header bytes that are not UTF-8 (kept as surrogates) simply do not match."""
    return hmac.compare_digest(offered.encode("utf-8", "surrogateescape"), token.encode("utf-8"))


def _deny(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


def middleware(policy: Policy) -> Any:  # aiohttp's Middleware protocol
    @web.middleware
    async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
        denied = refusal(request, policy)
        if denied is not None:
            return denied
        response = await handler(request)
        if response.prepared:  # a stream: its headers are gone already
            return response
        offered = request.query.get("token")
        if policy.token is not None and offered and token_matches(offered, policy.token):
            # only a client that presented the token gets it as a cookie; the page then takes it out of
            # the address bar (which may be on a projected screen) with history.replaceState
            response.set_cookie(TOKEN_COOKIE, policy.token, httponly=True, samesite="Strict")
        response.headers.setdefault("X-Frame-Options", "DENY")
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        return response

    return guard
