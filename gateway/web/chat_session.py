"""The web chat's session check: a browser holds (sid, HMAC token) for its conversation."""

from __future__ import annotations

import secrets

from aiohttp import web

from channels.web import session_token
from gateway.keys import SETTINGS


def check_session(request: web.Request, sid: str, token: str) -> None:
    """403 unless `token` is this gateway's token for `sid` (compared as bytes)."""
    secret = request.app[SETTINGS].session_secret
    if not sid or not token or not secrets.compare_digest(
            session_token(secret, sid).encode(), token.encode("utf-8", "replace")):
        raise web.HTTPForbidden(text="bad session")
