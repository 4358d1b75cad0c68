"""A Twilio call simulator: follows the TwiML the gateway returns, verb by verb, as Twilio's
voice engine would (https://www.twilio.com/docs/voice/twiml), signing every request.

Say and Play are collected; Pause calls `on_pause(seconds)` (a test drains the worker there,
the bench sleeps); Record asks `record(action, callback)` for the recording's params, posts
the recordingStatusCallback and then the action; Gather asks `press(url, said)` for digits
("" = no key: the action is posted only with actionOnEmptyResult, else the next verb runs);
Redirect posts the URL; Dial posts its action with `dial_status`; Hangup ends the call.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from urllib.parse import urlencode

from multidict import MultiDict

from channels.twilio_common import sign

Post = Callable[[str, dict[str, str]], Awaitable[tuple[int, str]]]
Press = Callable[[str, list[str]], str]
Record = Callable[[str, str], Awaitable[dict[str, str] | None]]


@dataclass
class CallLog:
    """What happened in one simulated call."""

    said: list[str] = field(default_factory=list)
    gathers: list[tuple[str, str]] = field(default_factory=list)  # (action, digits pressed)
    dialed: list[str] = field(default_factory=list)
    recordings: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)
    statuses: list[int] = field(default_factory=list)
    hung_up: bool = False
    completed: bool = False  # the call reached <Hangup> or the end of a document


def signed_headers(token: str, url: str, params: dict[str, str]) -> dict[str, str]:
    """The X-Twilio-Signature Twilio would send for a POST of `params` to `url`."""
    return {"X-Twilio-Signature": sign(token, url, MultiDict(params)),
            "Content-Type": "application/x-www-form-urlencoded"}


def form(params: dict[str, str]) -> bytes:
    """The urlencoded body."""
    return urlencode(list(params.items())).encode()


class CallSimulator:
    """One call: `post(url, params)` sends a signed POST to the gateway and returns (status,
    body); `base` holds the call's own params (CallSid, From, AccountSid…)."""

    def __init__(self, post: Post, base: dict[str, str], *, press: Press,
                 record: Record, on_pause: Callable[[float], Awaitable[None]],
                 dial_status: str = "no-answer", max_requests: int = 80) -> None:
        self.post = post
        self.base = base
        self.press = press
        self.record = record
        self.on_pause = on_pause
        self.dial_status = dial_status
        self.max_requests = max_requests
        self.log = CallLog()

    async def run(self, url: str) -> CallLog:
        """Place the call at `url` and follow it to the end."""
        params: dict[str, str] = dict(self.base)
        next_url: str | None = url
        while next_url is not None and len(self.log.requests) < self.max_requests:
            self.log.requests.append(next_url)
            status, body = await self.post(next_url, params)
            self.log.statuses.append(status)
            if status != 200:
                return self.log
            next_url, extra = await self._execute(ET.fromstring(body))
            params = {**self.base, **extra}
        return self.log

    async def _execute(self, root: ET.Element) -> tuple[str | None, dict[str, str]]:
        """Run a document's verbs; the next request (url, params) or (None, {}) at the end."""
        for verb in root:
            tag = verb.tag
            if tag == "Say":
                self.log.said.append(verb.text or "")
            elif tag == "Pause":
                await self.on_pause(float(verb.get("length", "1")))
            elif tag == "Redirect":
                return (verb.text or "").strip(), {}
            elif tag == "Hangup":
                self.log.hung_up = self.log.completed = True
                return None, {}
            elif tag == "Gather":
                said = [child.text or "" for child in verb if child.tag == "Say"]
                self.log.said += said
                digits = self.press(verb.get("action", ""), said)
                self.log.gathers.append((verb.get("action", ""), digits))
                if digits or verb.get("actionOnEmptyResult") == "true":
                    return verb.get("action", ""), {"Digits": digits}
            elif tag == "Record":
                params = await self.record(verb.get("action", ""),
                                           verb.get("recordingStatusCallback", ""))
                if params is None:
                    continue  # nothing recorded: Twilio goes on with the next verb
                self.log.recordings.append(params.get("RecordingSid", ""))
                return verb.get("action", ""), params
            elif tag == "Dial":
                self.log.dialed.append((verb.text or "").strip())
                action = verb.get("action")
                if action:
                    return action, {"DialCallStatus": self.dial_status}
                self.log.completed = True
                return None, {}
        self.log.completed = True
        return None, {}


def parse_twiml(body: str) -> ET.Element:
    """The <Response> element of a TwiML document."""
    return ET.fromstring(body)


def verbs(body: str) -> list[str]:
    """The top-level verbs of a TwiML document, in order."""
    return [child.tag for child in parse_twiml(body)]


__all__ = ["CallLog", "CallSimulator", "form", "parse_twiml", "signed_headers", "verbs"]
