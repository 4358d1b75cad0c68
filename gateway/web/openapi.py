"""The OpenAPI 3.1 description of the integration API, served at /api/v1/openapi.json."""

from __future__ import annotations

from typing import Any

_page = [
    {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 200,
                                                "default": 50}},
    {"name": "offset", "in": "query", "schema": {"type": "integer", "minimum": 0, "default": 0}},
]
_str = {"type": "string"}
_nstr = {"type": ["string", "null"]}
_ts = {"type": ["string", "null"], "format": "date-time"}

REPORT_SUMMARY: dict[str, Any] = {
    "type": "object",
    "properties": {
        "code": {"type": "string", "examples": ["PA-2611-000123"]},
        "status": {"type": "string", "enum": ["submitted", "confirmed", "forwarded",
                                              "in_progress", "resolved", "rejected", "merged",
                                              "draft"]},
        "channel": _str, "sector": _nstr, "score": {"type": ["number", "null"]},
        "needs_review": {"type": "boolean"}, "urgent": {"type": "boolean"}, "agency": _nstr,
        "text": _str, "transcript": _nstr, "address": _nstr,
        "location": {"type": ["object", "null"], "properties": {
            "lat": {"type": "number"}, "lon": {"type": "number"}}},
        "submitted_at": _ts, "updated_at": _ts, "duplicate_of": {"type": ["string", "null"]},
    },
    "required": ["code", "status", "channel"],
}

MESSAGE: dict[str, Any] = {
    "type": "object",
    "properties": {
        "channel": _str, "external_id": _str,
        "sender": {"type": "string", "description": "URN scheme and a pseudonym"},
        "text": _str, "kind": _str,
        "attachments": {"type": "array", "items": {"type": "object", "properties": {
            "kind": {"type": "string", "enum": ["image", "audio", "video", "file"]},
            "mime": _nstr}}},
        "location": {"type": ["object", "null"], "properties": {
            "lat": {"type": "number"}, "lon": {"type": "number"}}},
        "received_at": _ts, "accepted_at": _ts, "status": _str, "report_code": _nstr,
    },
}

_err = {"description": "error", "content": {"application/json": {"schema": {
    "type": "object", "properties": {"error": _str}}}}}

OPENAPI: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {"title": "PAHT Gateway integration API", "version": "1.0.0",
             "description": "Reports and accepted messages of the citizen-report gateway. "
                            "Citizens appear as pseudonyms unless they consented."},
    "servers": [{"url": "/api/v1"}],
    "components": {
        "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        "schemas": {"ReportSummary": REPORT_SUMMARY, "Message": MESSAGE},
    },
    "security": [{"bearer": []}],
    "paths": {
        "/reports": {"get": {
            "summary": "List reports, newest first",
            "parameters": [
                *_page,
                {"name": "status", "in": "query", "schema": _str,
                 "description": "comma-separated statuses"},
                {"name": "sector", "in": "query", "schema": _str},
                {"name": "channel", "in": "query", "schema": _str},
                {"name": "since", "in": "query", "schema": {"type": "string",
                                                            "format": "date-time"}},
                {"name": "until", "in": "query", "schema": {"type": "string",
                                                            "format": "date-time"}},
            ],
            "responses": {"200": {"description": "a page of reports", "content": {
                "application/json": {"schema": {"type": "object", "properties": {
                    "total": {"type": "integer"}, "limit": {"type": "integer"},
                    "offset": {"type": "integer"},
                    "items": {"type": "array",
                              "items": {"$ref": "#/components/schemas/ReportSummary"}}}}}}},
                "400": _err, "401": _err},
        }},
        "/reports/{code}": {"get": {
            "summary": "One report with classification, history and operator actions",
            "parameters": [{"name": "code", "in": "path", "required": True, "schema": _str}],
            "responses": {"200": {"description": "the report", "content": {"application/json": {
                "schema": {"allOf": [{"$ref": "#/components/schemas/ReportSummary"}, {
                    "type": "object", "properties": {
                        "citizen": {"type": "object"}, "attachments": {"type": "array"},
                        "classification": {"type": "array"}, "history": {"type": "array"},
                        "operator_actions": {"type": "array"}, "messages": {"type": "array"},
                        "flags": {"type": "array"}, "rating": {"type": ["integer", "null"]}}}]}}}},
                "401": _err, "404": _err},
        }},
        "/messages": {"get": {
            "summary": "Accepted inbound messages (audit trail)",
            "parameters": [*_page,
                           {"name": "channel", "in": "query", "schema": _str},
                           {"name": "external_id", "in": "query", "schema": _str}],
            "responses": {"200": {"description": "a page of messages", "content": {
                "application/json": {"schema": {"type": "object", "properties": {
                    "items": {"type": "array", "items": {"$ref": "#/components/schemas/Message"}},
                    "limit": {"type": "integer"}, "offset": {"type": "integer"}}}}}},
                "400": _err, "401": _err},
        }},
    },
}
