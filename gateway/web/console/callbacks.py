"""Hotline callers waiting to be called back (after hours, nobody answered, not understood).

Operators see the number masked — the report page reveals it, audited — supervisors and admins
see it whole; "Đã gọi lại" closes the request and is audited.
"""

from __future__ import annotations

from aiohttp import web

from gateway.keys import SERVICES
from gateway.ops.privacy import mask_urn
from gateway.web.console.auth import ROLE_RANK, operator_of
from gateway.web.console.render import render
from store.models import OperatorAction
from store.repos import calls as calls_repo
from store.repos import reports as reports_repo

REASONS = {"after_hours": "Ngoài giờ làm việc", "no_operator": "Không có cán bộ nghe máy",
           "not_ready": "Chưa nhận dạng kịp lời nói", "asked": "Người gọi đề nghị gọi lại"}


async def callbacks(request: web.Request) -> web.StreamResponse:
    """Open call-back requests, oldest first (the order to call), and the latest done ones."""
    services = request.app[SERVICES]
    op = operator_of(request)
    whole = ROLE_RANK.get(op.role, 0) >= ROLE_RANK["supervisor"]
    async with services.sessions() as db:
        waiting = await calls_repo.callbacks(db, open_only=True)
        recent = [c for c in await calls_repo.callbacks(db, open_only=False, limit=50)
                  if c.called_back_at is not None]
        linked = await reports_repo.by_ids(
            db, [c.report_id for c in [*waiting, *recent] if c.report_id])
    def shown(caller: str) -> str:
        return caller.removeprefix("tel:") if whole else mask_urn(caller).removeprefix("tel:")
    return render(request, "callbacks.html", waiting=waiting, recent=recent, reports=linked,
                  shown=shown, reasons=REASONS, done=request.query.get("done", ""))


async def called_back(request: web.Request) -> web.StreamResponse:
    """Close one request as called back (audited with the operator's note)."""
    services = request.app[SERVICES]
    op = operator_of(request)
    try:
        callback_id = int(request.match_info["id"])
    except ValueError as exc:
        raise web.HTTPNotFound() from exc
    form = await request.post()
    note = str(form.get("note", ""))[:500].strip() or None
    async with services.sessions() as db:
        item = await calls_repo.mark_called_back(db, callback_id, op.id or 0, note)
        if item is None:
            raise web.HTTPSeeOther("/console/callbacks?done=none")
        db.add(OperatorAction(report_id=item.report_id, operator_id=op.id, action="called_back",
                              after={"callback": callback_id, "reason": item.reason},
                              note=note))
        await db.commit()
    raise web.HTTPSeeOther("/console/callbacks?done=called")
