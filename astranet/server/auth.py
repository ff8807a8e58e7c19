"""Player authentication (WIRE A4): a JWT in ``Hello.token`` (or ``?token=``) names the player.

Operations: :class:`JwtAuthenticator` verifies one token and returns an :class:`Identity`
(the token's ``sub`` and the ``player_id`` it maps to), or raises
:class:`~astranet.errors.Unauthorized` (``unauthorized``, close 1008) for a missing, malformed,
expired or wrongly signed token. :func:`authenticator_from_config` builds one from
``--auth-jwt-secret`` (HS256) or ``--auth-jwt-public-key`` (RS256 for an RSA key, ES256 for a
P-256 key), or returns None: the server is anonymous, the default. :func:`token_from_path`
reads ``?token=`` from the WebSocket upgrade's request target (browsers cannot set headers).

Identity: ``player_id = player_id_for_subject(sub)``, 16 hex characters of
``SHA-256("astranet/player/v1\\0" + sub)``. A pure function of ``sub``: the same ``sub`` gets
the same ``player_id`` after a restart and on every node of a cluster with nothing stored or
shared, and rotating the signing key changes nothing. ``player_id`` is public (other players
see it); it does not reveal ``sub`` except to someone who can guess ``sub`` and hash it.

Claims: ``exp`` (future, no leeway) and ``sub`` (a non-empty string) are required; ``nbf`` and
``iat`` are checked when present; nothing else is read (``aud``/``iss`` are the login
service's business: a game that wants them checked signs tokens only for this server).
Algorithms are pinned per key (never taken from the token's header: no ``alg: none``, no
HS256-with-the-public-key confusion).

Cost: the key is parsed once at start; verifying is one HMAC (~10 us) or one RSA/ECDSA verify
(~50-150 us) per *join*, nothing per input (inputs are HMAC-signed with the session key).
Benchmark: benchmarks/abuse.py --auth (micro-benchmark of verify()).
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import load_pem_public_key

from astranet.errors import ConfigurationError, Unauthorized
from astranet.net.limits import MAX_AUTH_TOKEN_CHARS

__all__ = [
    "Identity",
    "JwtAuthenticator",
    "authenticator_from_config",
    "load_public_key",
    "player_id_for_subject",
    "token_from_path",
]

_PLAYER_ID_DOMAIN = b"astranet/player/v1\0"
PLAYER_ID_HEX_CHARS = 16  # like anonymous ids (secrets.token_hex(8)); 64 bits
MAX_SUBJECT_CHARS = 256  # a sub longer than this is not a user id we can key a seat on


@dataclass(frozen=True, slots=True)
class Identity:
    """Who a verified token says the player is."""

    sub: str
    player_id: str


def player_id_for_subject(sub: str) -> str:
    """The ``player_id`` of ``sub``: the same on every node and after every restart."""
    digest = hashlib.sha256(_PLAYER_ID_DOMAIN + sub.encode("utf-8")).hexdigest()
    return digest[:PLAYER_ID_HEX_CHARS]


def load_public_key(raw: str) -> rsa.RSAPublicKey | ec.EllipticCurvePublicKey:
    """A PEM public key given inline (``-----BEGIN ...``) or as a path to a PEM file."""
    text = raw
    if not raw.lstrip().startswith("-----BEGIN"):
        try:
            with open(raw, encoding="ascii") as file:
                text = file.read()
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigurationError(f"expected a PEM public key or a path to one: {exc}") from None
    try:
        key = load_pem_public_key(text.encode("ascii"))
    except (ValueError, UnicodeEncodeError) as exc:
        raise ConfigurationError(f"expected a PEM public key: {exc}") from None
    if isinstance(key, rsa.RSAPublicKey):
        return key
    if isinstance(key, ec.EllipticCurvePublicKey) and isinstance(key.curve, ec.SECP256R1):
        return key
    raise ConfigurationError("expected an RSA (RS256) or P-256 (ES256) public key")


class JwtAuthenticator:
    """Verifies players' JWTs with one key and one pinned algorithm."""

    def __init__(
        self,
        key: str | bytes | rsa.RSAPublicKey | ec.EllipticCurvePublicKey,
        algorithm: str,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.algorithm = algorithm
        self._key = key
        self._clock = clock
        self._jwt = jwt.PyJWT(options={"require": ["exp", "sub"]})

    @classmethod
    def hs256(cls, secret: str, **kwargs: Any) -> JwtAuthenticator:
        return cls(secret, "HS256", **kwargs)

    @classmethod
    def for_public_key(cls, raw: str, **kwargs: Any) -> JwtAuthenticator:
        key = load_public_key(raw)
        return cls(key, "RS256" if isinstance(key, rsa.RSAPublicKey) else "ES256", **kwargs)

    def verify(self, token: str | None) -> Identity:
        """The identity ``token`` proves, or :class:`Unauthorized` saying why not."""
        if token is None or token == "":
            raise Unauthorized("unauthorized: a token is required")
        if not isinstance(token, str) or len(token) > MAX_AUTH_TOKEN_CHARS:
            raise Unauthorized("unauthorized: malformed token")
        now = self._clock()
        try:
            # verify_exp etc. read PyJWT's own clock; we check exp against ours below so
            # tests (and a skewed host) control time through one injected clock.
            claims = self._jwt.decode(
                token,
                self._key,  # type: ignore[arg-type]
                algorithms=[self.algorithm],
                options={"verify_exp": False, "verify_nbf": False, "verify_iat": False},
            )
        except jwt.MissingRequiredClaimError as exc:
            raise Unauthorized(f"unauthorized: token has no {exc.claim!r} claim") from None
        except jwt.InvalidSignatureError:
            raise Unauthorized("unauthorized: wrong signature") from None
        except jwt.InvalidTokenError:
            raise Unauthorized("unauthorized: malformed token") from None
        exp, sub = claims.get("exp"), claims.get("sub")
        if not isinstance(exp, int | float) or isinstance(exp, bool):
            raise Unauthorized("unauthorized: malformed token (exp)")
        if exp <= now:
            raise Unauthorized("unauthorized: token expired")
        nbf = claims.get("nbf")
        if isinstance(nbf, int | float) and not isinstance(nbf, bool) and nbf > now:
            raise Unauthorized("unauthorized: token not valid yet")
        if not isinstance(sub, str) or not 1 <= len(sub) <= MAX_SUBJECT_CHARS:
            raise Unauthorized("unauthorized: malformed token (sub)")
        return Identity(sub, player_id_for_subject(sub))


def authenticator_from_config(
    secret: str | None, public_key: str | None, *, clock: Callable[[], float] = time.time
) -> JwtAuthenticator | None:
    """The authenticator the A4 flags ask for, or None (anonymous server)."""
    if secret is not None and public_key is not None:
        raise ConfigurationError(
            "--auth-jwt-secret/--auth-jwt-public-key: expected one or neither, got both"
        )
    if secret is not None:
        return JwtAuthenticator.hs256(secret, clock=clock)
    if public_key is not None:
        return JwtAuthenticator.for_public_key(public_key, clock=clock)
    return None


def token_from_path(path: str | None) -> str | None:
    """``?token=...`` of an upgrade request target such as ``/?token=eyJ...`` (else None)."""
    if not path or "?" not in path:
        return None
    values = parse_qs(urlsplit(path).query, max_num_fields=16).get("token")
    return values[0] if values else None
