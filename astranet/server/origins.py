"""Which web origins may use this server: ``--allowed-origins`` for the WebSocket upgrade and CORS.

Operations: :func:`parse_origins` turns the flag's value into an :data:`AllowedOrigins`
(``None`` = any origin); :func:`origin_allowed` decides one ``Origin`` header (the WebSocket edge
calls it on every upgrade); :func:`cors_headers` gives the headers a JSON answer carries.

Default: any origin (``*``). Why that is safe here: an Origin check protects endpoints that a
browser calls with ambient credentials (cookies, HTTP auth) a third-party page could borrow.
astranet has none: the WebSocket carries its credentials inside the protocol (a JWT in ``Hello``
or ``?token=``, a resume token), and the JSON endpoints are public read-only views. A deployment
that wants its game page to be the only web client lists its origins
(``--allowed-origins https://play.example.com``). A request without ``Origin`` (every non-browser
client: Python bots, the load tester, health checks) is always allowed: only browsers send it, and
the check exists to restrict browsers.
Limits: exact, case-insensitive matches of ``scheme://host[:port]``; no wildcards in host names.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from astranet.errors import ConfigurationError

__all__ = ["ANY_ORIGIN", "AllowedOrigins", "cors_headers", "origin_allowed", "parse_origins"]

AllowedOrigins = frozenset[str] | None  # None: any origin
ANY_ORIGIN = "*"
_ORIGIN = re.compile(r"https?://[A-Za-z0-9.\-\[\]:]+")


def parse_origins(raw: str) -> AllowedOrigins:
    """``*`` -> None (any); else a comma-separated list of ``scheme://host[:port]``."""
    value = raw.strip()
    if value == ANY_ORIGIN:
        return None
    origins = [part.strip().lower().rstrip("/") for part in value.split(",")]
    if not origins or any(not _ORIGIN.fullmatch(origin) for origin in origins):
        raise ConfigurationError(
            f"expected '*' or a comma-separated list of origins like "
            f"'https://play.example.com', got {raw!r}"
        )
    return frozenset(origins)


def origin_allowed(origin: str | None, allowed: AllowedOrigins) -> bool:
    """May a request carrying this ``Origin`` header (None = no header) proceed?"""
    if origin is None or allowed is None:
        return True
    return origin.strip().lower().rstrip("/") in allowed


def cors_headers(origin: str | None, allowed: AllowedOrigins) -> Mapping[str, str]:
    """CORS headers for a public GET answer (empty when this origin may not read it)."""
    if allowed is None:
        return {"Access-Control-Allow-Origin": "*"}
    if origin is not None and origin_allowed(origin, allowed):
        return {"Access-Control-Allow-Origin": origin, "Vary": "Origin"}
    return {"Vary": "Origin"}
