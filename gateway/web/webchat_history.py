"""The web chat's history: what the citizen sent and what the centre answered, in order, so a
reload of the page shows the whole conversation (and the open draft's questions) again.

`GET /chat/history?sid=&token=` → `{messages: [{id, from: "me"|"bot", text, buttons,
image?, at}], after}`; `after` is the last reply id, for `GET /chat/messages?after=`.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from channels.codec import message_from_dict
from gateway.keys import SERVICES
from gateway.web.chat_session import check_session
from store.repos import alerts as alerts_repo
from store.repos import console as console_repo

LIMIT = 200


async def history(request: web.Request) -> web.Response:
    """The session's conversation so far, oldest first."""
    sid, token = request.query.get("sid", ""), request.query.get("token", "")
    check_session(request, sid, token)
    services = request.app[SERVICES]
    sender = f"web:{sid}"
    async with services.sessions() as session:
        inbound = await alerts_repo.inbound_of(session, sender, LIMIT)
        replies = await console_repo.replies_to(session, sender, 0, ("reply", "notify"),
                                                limit=LIMIT)
    items: list[tuple[Any, int, dict[str, Any]]] = []
    for event in inbound:
        try:
            msg = message_from_dict(event.message)
        except (KeyError, TypeError, ValueError):
            continue  # an unreadable stored event is not worth failing the page for
        if msg.postback and not msg.text:
            continue  # a pressed button: its answer follows
        item: dict[str, Any] = {"id": f"in{event.id}", "from": "me", "text": msg.text,
                                "buttons": [], "at": event.accepted_at.isoformat()}
        image = next((a.url for a in msg.attachments if a.kind == "image"), None)
        if image:
            item["image"] = image
        if msg.location is not None:
            item["location"] = True
        items.append((event.accepted_at, 0, item))
    last = 0
    for row in replies:
        last = max(last, row.id or 0)
        items.append((row.created_at, 1, {
            "id": row.id, "from": "bot", "text": row.payload.get("text", ""),
            "buttons": [{"title": b["title"], "payload": b["payload"], "kind": b["kind"]}
                        for b in row.payload.get("buttons", [])],
            "at": row.created_at.isoformat()}))
    items.sort(key=lambda x: (x[0], x[1]))
    return web.json_response({"messages": [i for _, _, i in items], "after": last})
