"""Vietnamese labels of the console: why a report waits, flags, audit fields and values.

No code name reaches the page: an unknown reason or flag shows as a generic Vietnamese label
(its code stays in a `data-` attribute for tests and support).
"""

from __future__ import annotations

from typing import Any

from store.models import Report

REASON_LABELS = {
    "low_score": "Độ tin cậy phân loại thấp",
    "low_margin": "Hai lĩnh vực sát điểm nhau",
    "context_only": "Chỉ có từ ngữ cảnh, chưa có từ khoá chính",
    "single_keyword": "Chỉ khớp một từ khoá",
    "weak_evidence": "Căn cứ phân loại yếu",
    "short_text": "Nội dung quá ngắn",
    "rival_sector": "Nhắc đến việc của lĩnh vực khác",
    "question": "Là câu hỏi, chưa phải phản ánh",
    "second_opinion": "Mô hình học từ phản ánh đã xử lý chọn lĩnh vực khác",
    "no_keyword": "Không có từ khoá, chỉ mô hình học gợi ý lĩnh vực",
    "urgent": "Khẩn cấp",
    "misconduct": "Phản ánh về cán bộ, công chức",
    "classifier": "Bộ phân loại chưa chắc chắn",
    "no_classifier": "Bộ phân loại không hoạt động",
    "empty": "Không có nội dung chữ",
    "no_transcript": "Cuộc gọi chưa có bản ghi lời nói",
    "transcript_low_confidence": "Bản ghi lời nói có độ tin cậy thấp",
    "transcript_not_vietnamese": "Bản ghi lời nói không giống tiếng Việt",
    "possible_duplicate": "Có thể trùng phản ánh khác",
    "policy": "Tỉnh yêu cầu xác nhận mọi phản ánh",
}
FLAG_LABELS = {
    "no_place": "Chưa có địa điểm",
    "photo_only": "Chỉ có hình ảnh",
    "emergency": "Tình huống khẩn cấp",
    "silent": "Ghi âm không có tiếng",
    "silent_audio": "Ghi âm không có tiếng",
    "transcript_pending": "Đang chờ chuyển lời nói thành chữ",
    "abusive": "Ngôn từ xúc phạm",
    "spam": "Tin rác, quấy rối",
    "out_of_scope": "Ngoài phạm vi tiếp nhận",
    "duplicate": "Phản ánh trùng",
    "no_transcript": "Chưa có bản ghi lời nói",
}
FIELD_LABELS = {
    "sector": "Lĩnh vực", "agency": "Cơ quan", "score": "Điểm", "runner_up": "Phương án 2",
    "status": "Trạng thái", "urgent": "Khẩn", "duplicate_of": "Trùng với (mã nội bộ)",
    "original": "Phản ánh gốc", "subscriber": "Công dân theo dõi", "text": "Nội dung",
    "active": "Đang hoạt động", "locked_until": "Khoá đến", "operator": "Tài khoản",
    "target_id": "Mã tài khoản", "assigned_to": "Người nhận xử lý", "audience": "Gửi cho",
    "waited_minutes": "Đã chờ (phút)", "deadline": "Hạn xử lý", "reason": "Lý do",
    "kind": "Loại", "hazard": "Tình huống", "alert": "Cảnh báo",
}
AUDIENCE_LABELS = {"operators": "Cán bộ tiếp nhận", "supervisors": "Giám sát"}
POSTBACK_LABELS = {"confirm": "Xác nhận", "cancel": "Huỷ", "edit": "Sửa", "yes": "Đồng ý",
                   "no": "Không"}
KIND_LABELS = {"message": "", "postback": "Bấm nút", "location": "Gửi vị trí",
               "call": "Cuộc gọi", "recording": "Ghi âm", "voice": "Tin thoại"}


def reason_label(code: str) -> str:
    """A review reason (or `flag:<flag>`) in Vietnamese."""
    if code.startswith("flag:"):
        return flag_label(code[5:])
    return REASON_LABELS.get(code, "Cần cán bộ xem lại")


def flag_label(flag: str) -> str:
    """A report flag in Vietnamese."""
    return FLAG_LABELS.get(flag, "Đánh dấu khác")


def postback_label(payload: str) -> str:
    """What a citizen's button press meant."""
    return POSTBACK_LABELS.get(payload.split(":", 1)[0], "Bấm nút trả lời")


def kind_label(kind: str) -> str:
    """The kind of an inbound message (empty for a plain message)."""
    return KIND_LABELS.get(kind, "")


def queue_reasons(report: Report, policy: str) -> list[tuple[str, str]]:
    """Why the report waits for an operator: (code, Vietnamese label), urgent first."""
    codes: list[str] = []
    if report.urgent:
        codes.append("urgent")
    codes += [c for c in report.review_reasons if c != "urgent"]
    if report.suspected_duplicate_of and "possible_duplicate" not in codes:
        codes.append("possible_duplicate")
    codes += [f"flag:{f}" for f in report.flags
              if not f.startswith("subscriber:") and f"flag:{f}" not in codes]
    if (report.transcript or any(a.get("kind") == "audio" for a in report.attachments)) and \
            not any(c.startswith("transcript") or c == "no_transcript" for c in codes):
        codes.append("speech")
    if not codes and policy == "all":
        codes.append("policy")
    labels = dict(REASON_LABELS, speech="Phản ánh bằng lời nói")
    out = []
    for code in dict.fromkeys(codes):
        out.append((code, labels.get(code) or reason_label(code)))
    return out


def _value(field: str, value: Any, names: dict[str, Any]) -> str:
    if value is None or value == "":
        return "—"
    if isinstance(value, bool):
        return "có" if value else "không"
    if field in ("sector", "runner_up") and callable(names.get("sector")):
        return str(names["sector"](value))
    if field == "status" and isinstance(names.get("status"), dict):
        return str(names["status"].get(value, value))
    if field == "audience":
        return AUDIENCE_LABELS.get(str(value), str(value))
    if field == "assigned_to" and isinstance(names.get("operators"), dict):
        return str(names["operators"].get(value, value))
    if isinstance(value, float):
        return f"{value:.2f}"
    if isinstance(value, list | tuple):
        return ", ".join(str(v) for v in value)
    if isinstance(value, dict):
        return "; ".join(f"{FIELD_LABELS.get(k, k)}: {v}" for k, v in value.items())
    return str(value)


def changes(before: dict[str, Any], after: dict[str, Any], **names: Any
            ) -> list[tuple[str, str, str]]:
    """An audit row's before/after as (field, before, after) lines in Vietnamese."""
    fields = list(dict.fromkeys([*before, *after]))
    return [(FIELD_LABELS.get(f, f), _value(f, before.get(f), names) if f in before else "",
             _value(f, after.get(f), names) if f in after else "") for f in fields]
