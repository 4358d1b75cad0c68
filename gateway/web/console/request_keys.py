"""Per-request storage of the logged-in operator and the session's CSRF token."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from store.models import Operator

_RequestKey: Any = getattr(web, "RequestKey", None)  # aiohttp >= 3.12; plain strings before
OPERATOR: Any = _RequestKey("paht_operator", Operator) if _RequestKey else "paht_operator"
CSRF: Any = _RequestKey("paht_csrf", str) if _RequestKey else "paht_csrf"

__all__ = ["CSRF", "OPERATOR"]
