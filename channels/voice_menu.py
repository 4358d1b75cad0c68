"""TwiML of the hotline's in-call flow: hold while the recording is transcribed, read back what
was understood, the keypad menus, the duty operator, call-backs and the emergency advice.

Pure functions of texts and URLs (no database): gateway/web/voice_calls.py decides which one
a call gets. Provider docs: <Gather> https://www.twilio.com/docs/voice/twiml/gather (input
"dtmf", numDigits, actionOnEmptyResult), <Redirect>, <Pause>, <Dial> (action gets
DialCallStatus) https://www.twilio.com/docs/voice/twiml/dial.

Keys: 1 confirm, 2 choose the sector, 3 speak again, 0 the duty operator, 9 emergency; in the
sector menu 1–8 are the province's sectors (config/voice.toml [menu]).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from urllib.parse import urlencode

from twilio.twiml.voice_response import Gather, VoiceResponse

VOICE = "Google.vi-VN-Standard-A"  # Polly/alice have no vi-VN
LANGUAGE = "vi-VN"
FLOW_PATH = "/webhooks/twilio/voice/flow"
GATHER_TIMEOUT_S = 6  # seconds Twilio waits for a key after the last option was read

KEY_CONFIRM, KEY_SECTOR, KEY_AGAIN, KEY_OPERATOR, KEY_EMERGENCY = "1", "2", "3", "0", "9"
MAX_MENU_SECTORS = 8  # keys 1..8; 9 stays the emergency key
# Keys of [voice_menu] in config/messages.vi.toml the flow speaks (checked at start-up).
TEXT_KEYS = (
    "greeting", "record_prompt", "hold", "readback", "readback_no_place", "readback_unclear",
    "option_confirm", "option_sector", "option_again", "option_operator", "sector_prompt",
    "sector_option", "confirmed", "sector_chosen", "again", "connecting", "callback",
    "callback_after_hours", "not_ready", "no_input", "emergency_record", "emergency_text",
)


class CallMenu:
    """Builds the flow's TwiML; `base` is PAHT_PUBLIC_BASE_URL, `texts` the [voice_menu] table
    and `voice_texts` the [voice] table (goodbye, emergency)."""

    def __init__(self, base: str, texts: Mapping[str, str], voice_texts: Mapping[str, str],
                 *, max_seconds: int) -> None:
        missing = [k for k in TEXT_KEYS if not texts.get(k)]
        if missing:
            raise ValueError(f"[voice_menu] texts missing from the messages file: {missing}")
        self.base = base.rstrip("/")
        self.t = texts
        self.voice_texts = voice_texts
        self.max_seconds = max_seconds

    def url(self, step: str, **query: str | int) -> str:
        """Absolute URL of a flow step; the query is covered by Twilio's signature."""
        items = {"step": step, **{k: str(v) for k, v in query.items() if v not in ("", None)}}
        return f"{self.base}{FLOW_PATH}?{urlencode(items)}"

    def _say(self, node: VoiceResponse | Gather, text: str) -> None:
        node.say(text, voice=VOICE, language=LANGUAGE)

    def _gather(self, response: VoiceResponse, action: str) -> Gather:
        return response.gather(input="dtmf", num_digits=1, timeout=GATHER_TIMEOUT_S,
                               action=action, method="POST", action_on_empty_result=True)

    def _record(self, response: VoiceResponse, action: str, callback: str) -> None:
        response.record(
            action=action, method="POST", max_length=self.max_seconds, timeout=5,
            finish_on_key="#", play_beep=True, trim="trim-silence",
            recording_status_callback=callback, recording_status_callback_method="POST",
            recording_status_callback_event="completed",
        )

    def _goodbye(self, response: VoiceResponse) -> str:
        self._say(response, self.voice_texts.get("goodbye", ""))
        response.hangup()
        return str(response)

    # -- the steps --------------------------------------------------------------------------

    def greeting(self, recording_callback: str) -> str:
        """A new call: greeting with the emergency key, then the beep and <Record>."""
        response = VoiceResponse()
        # Only a key pressed during the greeting counts; without one Twilio goes on to <Record>.
        gather = response.gather(input="dtmf", num_digits=1, timeout=1, action=self.url("start"),
                                 method="POST")
        self._say(gather, self.t["greeting"])
        self._say(response, self.t["record_prompt"])
        self._record(response, self.url("hold"), recording_callback)
        return self._goodbye(response)  # reached when nothing was recorded

    def hold(self, next_url: str, pause_s: int, first: bool) -> str:
        """"Xin chờ trong giây lát", a pause, then ask again (a bounded redirect loop)."""
        response = VoiceResponse()
        if first:
            self._say(response, self.t["hold"])
        response.pause(length=max(1, pause_s))
        response.redirect(next_url, method="POST")
        return str(response)

    def readback(self, sector: str | None, place: str | None, action: str,
                 emergency: str | None = None, operator: bool = True) -> str:
        """What was understood (sector and place) and the keypad options."""
        response = VoiceResponse()
        if emergency:
            self._say(response, emergency)
        gather = self._gather(response, action)
        if sector is None:
            self._say(gather, self.t["readback_unclear"])
        elif place:
            self._say(gather, self.t["readback"].format(sector=sector, place=place))
        else:
            self._say(gather, self.t["readback_no_place"].format(sector=sector))
        if sector is not None:
            self._say(gather, self.t["option_confirm"])
        self._say(gather, self.t["option_sector"])
        self._say(gather, self.t["option_again"])
        if operator:
            self._say(gather, self.t["option_operator"])
        return str(response)

    def sector_menu(self, names: Sequence[str], action: str, *, repeat: bool = False) -> str:
        """"Bấm 1: vệ sinh môi trường. Bấm 2: …"."""
        response = VoiceResponse()
        gather = self._gather(response, action)
        if repeat:
            self._say(gather, self.t["no_input"])
        self._say(gather, self.t["sector_prompt"])
        for digit, name in enumerate(names[:MAX_MENU_SECTORS], start=1):
            self._say(gather, self.t["sector_option"].format(digit=digit, sector=name))
        return str(response)

    def no_input(self, again_url: str) -> str:
        """Nothing pressed: say so and read the menu again."""
        response = VoiceResponse()
        self._say(response, self.t["no_input"])
        response.redirect(again_url, method="POST")
        return str(response)

    def confirmed(self, sector: str | None = None) -> str:
        """The caller confirmed (or chose the sector): thank them and hang up."""
        response = VoiceResponse()
        if sector:
            self._say(response, self.t["sector_chosen"].format(sector=sector))
        self._say(response, self.t["confirmed"])
        response.hangup()
        return str(response)

    def record_again(self, action: str, callback: str, key: str = "again") -> str:
        """Speak (again): the prompt `key`, the beep and a new <Record>."""
        response = VoiceResponse()
        self._say(response, self.t[key])
        self._record(response, action, callback)
        return self._goodbye(response)

    def dial(self, number: str, timeout_s: int, after: str) -> str:
        """Put the caller through to the duty operator; `after` hears how the dial ended."""
        response = VoiceResponse()
        self._say(response, self.t["connecting"])
        response.dial(number, timeout=timeout_s, action=after, method="POST")
        return str(response)

    def callback(self, key: str = "callback", prefix: str | None = None) -> str:
        """No operator now: a call-back request was left (`key`: callback | after_hours |
        not_ready); the goodbye and hang up."""
        response = VoiceResponse()
        if prefix:
            self._say(response, prefix)
        self._say(response, self.t[key])
        return self._goodbye(response)

    def emergency(self, advice: str, then: str, record_callback: str | None) -> str:
        """Key 9: the 113/114/115 advice, then the operator (`then` is a <Dial>-ing step URL)
        or, without one, a recording of what happened."""
        response = VoiceResponse()
        self._say(response, advice)
        if record_callback is None:
            response.redirect(then, method="POST")
            return str(response)
        self._say(response, self.t["emergency_record"])
        self._record(response, then, record_callback)
        return self._goodbye(response)

    def goodbye(self) -> str:
        """Thank the caller and hang up."""
        return self._goodbye(VoiceResponse())
