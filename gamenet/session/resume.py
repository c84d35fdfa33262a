"""
Resume tokens: what a client presents to get its session back after its
connection dropped (see C{doc/sessions.md}). Pure: no I/O, no clock.

A token names the frontend holding the session, the session's id there, the
uid it is bound to and a nonce, signed with an HMAC keyed by the cluster
secret. So any frontend of the cluster can check a token without asking
anyone, and knows which frontend to ask for the session; only that frontend
knows whether the nonce is still the session's current one (a token is good
once: every bind and every resume gives the session a new nonce).

    token = issue(secret, "connector-1", 7, "alice*lobby", new_nonce())
    claims = verify(secret, token)      # Claims("connector-1", 7, "alice*lobby", nonce)
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets

import attrs

from ..errors import GamenetError

VERSION = "r1"
REFUSED_CODE = 410
"""The handshake code of a refused resume (its C{message} says why)."""
_MAX_TOKEN = 1024


class ResumeRefused(GamenetError):
    """
    A resume that is refused; its message is the reason the client is told.
    """

    code = REFUSED_CODE
    default_message = "resume refused"


class TokenError(ValueError):
    """
    A token that is not one this cluster issued: malformed, or its signature
    does not match.
    """


@attrs.frozen
class Claims:
    """
    What a well-signed token says.

    @ivar frontend_id: the frontend that holds the session.
    @ivar session_id: the session's id on that frontend.
    @ivar uid: the uid the session was bound to when the token was issued.
    @ivar nonce: the session's nonce when the token was issued.
    """

    frontend_id: str
    session_id: int
    uid: str
    nonce: str


def new_nonce() -> str:
    """
    A fresh nonce: 128 random bits from the operating system's generator.
    """
    return secrets.token_urlsafe(16)


def _key(secret: str) -> bytes:
    # A key of its own, derived from the cluster secret, so that a token is
    # never also a valid MAC for anything else the secret signs.
    return hmac.new(secret.encode("utf-8"), b"gamenet resume token", hashlib.sha256).digest()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def issue(secret: str, frontend_id: str, session_id: int, uid: str, nonce: str) -> str:
    """
    A token for session C{session_id} of C{frontend_id}, bound to C{uid}:
    URL-safe text, C{r1.<claims>.<signature>}.
    """
    payload = _b64(json.dumps([frontend_id, session_id, uid, nonce], separators=(",", ":")).encode("utf-8"))
    signature = hmac.new(_key(secret), f"{VERSION}.{payload}".encode("ascii"), hashlib.sha256).digest()
    return f"{VERSION}.{payload}.{_b64(signature)}"


def verify(secret: str, token: object) -> Claims:
    """
    The claims of a token signed with C{secret}.

    @raise TokenError: C{token} is not a string of this shape, or its
        signature does not match (compared in constant time).
    """
    if not isinstance(token, str) or len(token) > _MAX_TOKEN or token.count(".") != 2:
        raise TokenError("not a resume token")
    version, payload, signature = token.split(".")
    if version != VERSION:
        raise TokenError("not a resume token")
    expected = hmac.new(_key(secret), f"{version}.{payload}".encode("ascii", "replace"), hashlib.sha256).digest()
    try:
        given = _unb64(signature)
    except ValueError:
        raise TokenError("not a resume token") from None
    if not hmac.compare_digest(given, expected):
        raise TokenError("the resume token's signature does not match")
    try:
        frontend_id, session_id, uid, nonce = json.loads(_unb64(payload))
    except (ValueError, TypeError):
        raise TokenError("not a resume token") from None
    if not (isinstance(frontend_id, str) and type(session_id) is int and isinstance(uid, str)
            and isinstance(nonce, str)):
        raise TokenError("not a resume token")
    return Claims(frontend_id, session_id, uid, nonce)
