"""Templates of the console (Jinja2, autoescaped) and the small view helpers they use."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import jinja2
from aiohttp import web

from channels.registry import CHANNEL_NAMES, traits_of
from gateway.keys import SERVICES
from gateway.web.console import labels
from gateway.web.console import settings_file as console_config
from gateway.web.console.request_keys import CSRF, OPERATOR

TEMPLATES = jinja2.Environment(
    loader=jinja2.PackageLoader("gateway.web.console", "templates"),
    autoescape=jinja2.select_autoescape(["html"]),
    trim_blocks=True,
    lstrip_blocks=True,
)

STATUS_LABELS = {
    "draft": "Đang soạn",
    "submitted": "Chờ xác nhận",
    "confirmed": "Đã xác nhận",
    "forwarded": "Đã chuyển",
    "in_progress": "Đang xử lý",
    "resolved": "Đã xử lý",
    "rejected": "Không tiếp nhận",
    "merged": "Đã gộp trùng",
}
ACTION_LABELS = {
    "login": "Đăng nhập", "logout": "Đăng xuất", "login_failed": "Đăng nhập sai",
    "login_refused": "Từ chối đăng nhập", "locked": "Khoá tài khoản", "unlock": "Mở khoá",
    "confirm": "Xác nhận", "change_sector": "Đổi lĩnh vực", "set_urgency": "Đổi mức khẩn",
    "note": "Ghi chú", "reply": "Trả lời công dân", "reject": "Không tiếp nhận",
    "merge": "Gộp trùng", "reveal_phone": "Xem số điện thoại",
    "disable_operator": "Khoá tài khoản cán bộ", "enable_operator": "Mở tài khoản cán bộ",
    "retry_forward": "Chuyển tiếp lại", "reminder": "Nhắc việc",
    "claim": "Nhận xử lý", "assign": "Giao xử lý", "unassign": "Trả lại hàng chờ",
    "ack_alert": "Đã nhận cảnh báo khẩn",
    "correct_transcript": "Sửa bản ghi lời nói", "caller_confirm": "Người gọi xác nhận",
    "caller_sector": "Người gọi chọn lĩnh vực", "called_back": "Đã gọi lại người gọi",
}
ROLE_LABELS = {"operator": "Cán bộ tiếp nhận", "supervisor": "Giám sát", "admin": "Quản trị"}


def channel_badge(channel: str) -> tuple[str, str]:
    """Short label and title of a channel's badge (integrations such as open311: the name)."""
    if channel not in CHANNEL_NAMES:
        return channel[:4], channel
    traits = traits_of(channel)
    return traits.label, traits.title


def local(services: Any, when: datetime | None, fmt: str = "%H:%M %d/%m/%Y") -> str:
    """A UTC time in the province's time zone."""
    if when is None:
        return ""
    return when.astimezone(ZoneInfo(services.settings.timezone)).strftime(fmt)


def duration(delta: timedelta) -> str:
    """A short Vietnamese duration: 5 phút, 2 giờ 10 phút, 3 ngày."""
    minutes = int(abs(delta.total_seconds()) // 60)
    if minutes < 60:
        return f"{minutes} phút"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours} giờ {minutes} phút" if minutes else f"{hours} giờ"
    return f"{hours // 24} ngày"


def highlight(text: str, matches: list[dict[str, Any]]) -> list[tuple[str, dict[str, Any] | None]]:
    """Split `text` into plain and matched segments by the classifier's character spans.

    Overlapping or out-of-range spans are skipped, so the segments always rebuild the text.
    """
    segments: list[tuple[str, dict[str, Any] | None]] = []
    pos = 0
    spans = sorted(
        (m for m in matches if isinstance(m.get("start"), int) and isinstance(m.get("end"), int)),
        key=lambda m: (m["start"], -m["end"]),
    )
    for m in spans:
        start, end = m["start"], m["end"]
        if start < pos or end <= start or end > len(text):
            continue
        if start > pos:
            segments.append((text[pos:start], None))
        segments.append((text[start:end], m))
        pos = end
    if pos < len(text):
        segments.append((text[pos:], None))
    return segments


def sector_name(services: Any, code: str | None) -> str:
    """The sector's display name (or the code when the classifier does not know it)."""
    if not code:
        return "Chưa phân loại"
    clf = services.classifier
    if clf is not None and code in clf.sectors:
        return str(clf.sectors[code].name)
    return code


def render(request: web.Request, template: str, status: int = 200, **context: Any) -> web.Response:
    """Render a console template with the common context (operator, CSRF token, labels)."""
    services = request.app[SERVICES]

    context.setdefault("op", request.get(OPERATOR))
    context.setdefault("csrf", request.get(CSRF, ""))
    html = TEMPLATES.get_template(template).render(
        services=services, channel_badge=channel_badge, status_labels=STATUS_LABELS,
        action_labels=ACTION_LABELS, role_labels=ROLE_LABELS, local=lambda w, *f: local(
            services, w, *f), sector_name=lambda c: sector_name(services, c),
        path=request.path, reason_label=labels.reason_label, flag_label=labels.flag_label,
        postback_label=labels.postback_label, kind_label=labels.kind_label,
        changes=lambda b, a: labels.changes(
            b or {}, a or {}, status=STATUS_LABELS, sector=lambda c: sector_name(services, c)),
        cfg=console_config.load(services.settings.config_dir), **context,
    )
    return web.Response(text=html, status=status, content_type="text/html", charset="utf-8")
