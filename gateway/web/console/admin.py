"""Admin pages: operator accounts (disable, enable, unlock) and the audit log."""

from __future__ import annotations

from aiohttp import web

from gateway.keys import SERVICES
from gateway.web.console.auth import now, operator_of
from gateway.web.console.render import ACTION_LABELS, render
from store.models import Operator, OperatorAction
from store.repos import operators as operators_repo

PAGE_SIZE = 100


async def operators(request: web.Request) -> web.StreamResponse:
    """Every console account with its role, state and lock."""
    services = request.app[SERVICES]
    async with services.sessions() as db:
        ops = await operators_repo.all_operators(db)
    return render(request, "admin_operators.html", operators=ops, now=now(),
                  done=request.query.get("done", ""))


async def operator_state(request: web.Request) -> web.StreamResponse:
    """Disable, enable or unlock an account (never one's own)."""
    services = request.app[SERVICES]
    me = operator_of(request)
    form = await request.post()
    what = str(form.get("do", ""))
    try:
        target_id = int(request.match_info["id"])
    except ValueError as exc:
        raise web.HTTPNotFound() from exc
    if what not in ("disable", "enable", "unlock"):
        raise web.HTTPBadRequest(text="unknown action")
    async with services.sessions() as db:
        target = await db.get(Operator, target_id)
        if target is None:
            raise web.HTTPNotFound()
        if target.id == me.id and what == "disable":
            raise web.HTTPSeeOther("/console/admin/operators?done=self")
        before = {"active": target.active,
                  "locked_until": target.locked_until.isoformat() if target.locked_until
                  else None}
        if what == "unlock":
            target.locked_until, target.failed_logins = None, 0
            action = "unlock"
        else:
            target.active = what == "enable"
            action = f"{what}_operator"
        db.add(target)
        db.add(OperatorAction(operator_id=me.id, action=action, before=before,
                              after={"active": target.active, "operator": target.username,
                                     "target_id": target.id}))
        if action == "unlock":  # the lock-out counter restarts for the unlocked account
            db.add(OperatorAction(operator_id=target.id, action="unlock",
                                  note=f"by {me.username}"))
        await db.commit()
    raise web.HTTPSeeOther(f"/console/admin/operators?done={action}")


async def audit(request: web.Request) -> web.StreamResponse:
    """The audit log, newest first, filterable by operator and action."""
    services = request.app[SERVICES]
    q = request.query
    try:
        page = max(1, int(q.get("page", "1")))
    except ValueError:
        page = 1
    action = q.get("action", "")
    if action not in ACTION_LABELS:
        action = ""
    username = q.get("operator", "")[:64]
    async with services.sessions() as db:
        rows, total = await operators_repo.audit_page(
            db, action=action or None, username=username or None, page=page,
            page_size=PAGE_SIZE)
        names = await operators_repo.usernames(db)
    return render(request, "audit.html", rows=rows, total=total, page=page,
                  pages=max(1, -(-total // PAGE_SIZE)), action=action,
                  operator=username, usernames=names)
