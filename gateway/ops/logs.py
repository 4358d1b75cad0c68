"""Structured (JSON) logging with phone numbers and names scrubbed from every record."""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime

from gateway.ops.privacy import mask_name, mask_urn, scrub

_STD = set(vars(logging.makeLogRecord({})).keys()) | {"message", "asctime"}
_SENSITIVE_KEYS = {"sender", "urn", "recipient", "phone", "from", "to"}


class _Formatter(logging.Formatter):
    def __init__(self, as_json: bool) -> None:
        super().__init__()
        self.as_json = as_json

    def format(self, record: logging.LogRecord) -> str:
        extra = {k: v for k, v in vars(record).items() if k not in _STD}
        for key in list(extra):
            if key in _SENSITIVE_KEYS and isinstance(extra[key], str):
                extra[key] = mask_urn(extra[key])
            elif key == "name_" or key == "citizen_name":
                extra[key] = mask_name(str(extra[key]))
        message = scrub(record.getMessage())
        if record.exc_info:
            message += "\n" + scrub(self.formatException(record.exc_info))
        if not self.as_json:
            tail = " ".join(f"{k}={v}" for k, v in extra.items())
            return f"{record.levelname:<7} {record.name}: {message} {tail}".rstrip()
        payload = {
            "ts": datetime.now(UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": message,
            **{k: (v if isinstance(v, int | float | bool | None) else scrub(str(v)))
               for k, v in extra.items()},
        }
        return json.dumps(payload, ensure_ascii=False)


def setup_logging(level: str = "INFO", as_json: bool = True) -> None:
    """Install the scrubbing formatter on the root logger."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_Formatter(as_json))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
