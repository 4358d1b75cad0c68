"""Clean failures of `paht`: one line on stderr per problem, exit 2 (config) or 1 (runtime).

Settings, the config directory, the database and the listening port are checked before a
command starts, so an operator reads what to fix instead of a traceback. `PAHT_TRACEBACK=1`
shows the full traceback of an unexpected error (for developers).
"""

from __future__ import annotations

import asyncio
import errno
import os
import re
import socket
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from gateway.settings import Settings

USAGE = 2  # bad setting, config or URL: fix the configuration
RUNTIME = 1  # the environment failed: database down, port busy, unexpected error

CONFIG_FILES = ("sectors.toml", "messages.vi.toml")
_SECRET_WORDS = ("secret", "token", "password", "key", "auth", "sid", "url")
_PASSWORD_IN_URL = re.compile(r"(://[^:/@\s]*:)[^@\s]+@")
_EXPECTED = {
    "int_parsing": "an integer",
    "int_from_float": "an integer",
    "float_parsing": "a number",
    "bool_parsing": "true or false",
    "path_type": "a path",
}


class CliError(Exception):
    """A failure to report as `lines` on stderr, exiting with `code`."""

    def __init__(self, *lines: str, code: int = USAGE) -> None:
        super().__init__("; ".join(lines))
        self.lines = lines
        self.code = code


def env_name(loc: tuple[int | str, ...]) -> str:
    """The environment variable of a settings field location, e.g. PAHT_REVIEW_POLICY."""
    prefix = str(Settings.model_config.get("env_prefix") or "")
    delimiter = str(Settings.model_config.get("env_nested_delimiter") or "__")
    return prefix + delimiter.join(str(part) for part in loc if isinstance(part, str)).upper()


def settings_error_lines(errors: list[Any]) -> list[str]:
    """One line per invalid setting, naming its variable and what it accepts."""
    lines = []
    for error in errors:
        loc = tuple(error.get("loc", ()))
        name = env_name(loc) if loc else "a PAHT_* setting"
        kind = error.get("type", "")
        expected = (error.get("ctx") or {}).get("expected") or _EXPECTED.get(kind)
        field = str(loc[0]).lower() if loc else ""
        shown = name
        if "input" in error and not any(word in field for word in _SECRET_WORDS):
            shown = f"{name}={error['input']!r}"
        if kind == "literal_error" and expected:
            lines.append(f"invalid setting {shown}: allowed values are {expected}")
        elif expected:
            lines.append(f"invalid setting {shown}: expected {expected}")
        else:
            lines.append(f"invalid setting {shown}: {error.get('msg', kind)}")
    return lines


def load_settings() -> Settings:
    """Settings from the environment (and .env), or CliError naming each bad variable."""
    from pydantic import ValidationError
    from pydantic_settings import SettingsError

    try:
        return Settings()
    except ValidationError as exc:
        raise CliError(*settings_error_lines(exc.errors())) from exc
    except SettingsError as exc:
        raise CliError(f"invalid setting: {one_line(exc)}") from exc


def check_config_dir(settings: Settings) -> None:
    """PAHT_CONFIG_DIR, when set, must be a directory holding sectors.toml and messages.vi.toml."""
    if settings.config_dir is None:
        return  # the packaged default
    directory = Path(settings.config_dir)
    name = env_name(("config_dir",))
    if not directory.is_dir():
        raise CliError(f"{name}={directory} is not a directory "
                       f"(it must hold {' and '.join(CONFIG_FILES)})")
    missing = [f for f in CONFIG_FILES if not (directory / f).is_file()]
    if missing:
        raise CliError(f"{name}={directory} lacks {', '.join(missing)} "
                       "(copy them from the packaged config/)")


def check_database(settings: Settings, timeout: float = 5.0) -> None:
    """Refuse a malformed PAHT_DATABASE_URL (exit 2) or a database that does not answer (1)."""
    from store.db import DatabaseUnavailable, DatabaseUrlError
    from store.db import check_database as check

    name = env_name(("database_url",))
    try:
        asyncio.run(check(settings.database_url, seconds=timeout))
    except DatabaseUrlError as exc:
        raise CliError(f"{name}: {exc}") from exc
    except DatabaseUnavailable as exc:
        raise CliError(f"database unavailable: {exc.reason}", code=RUNTIME) from exc


def bind_listener(host: str, port: int) -> socket.socket:
    """A listening TCP socket on host:port, or CliError when it is taken or not allowed."""
    try:
        infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM,
                                   flags=socket.AI_PASSIVE)
    except (socket.gaierror, UnicodeError) as exc:
        raise CliError(f"cannot listen on {host}:{port}: unknown host "
                       f"(set --host or {env_name(('host',))})") from exc
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        # As aiohttp does: a restart may rebind while old connections sit in TIME_WAIT.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(128)  # claim the port now: a second bind fails even before we serve
    except OSError as exc:
        sock.close()
        reason = "already in use" if exc.errno == errno.EADDRINUSE else (exc.strerror or str(exc))
        raise CliError(f"cannot listen on {host}:{port}: {reason} "
                       f"(choose another with --port or {env_name(('port',))})",
                       code=RUNTIME) from exc
    return sock


def one_line(exc: BaseException) -> str:
    """The first line of an error's text (the driver's, under SQLAlchemy), password masked."""
    cause = getattr(exc, "orig", None) or exc
    lines = [line.strip() for line in str(cause).splitlines() if line.strip()]
    text = lines[0] if lines else ""
    text = _PASSWORD_IN_URL.sub(r"\1***@", text)
    return f"{type(cause).__name__}: {text}" if text else type(cause).__name__


def _want_traceback() -> bool:
    # Read directly, not through Settings: it must work when the settings themselves are bad.
    return os.environ.get("PAHT_TRACEBACK", "").strip().lower() in {"1", "true", "yes"}


def run_command(body: Callable[[], int], prog: str) -> int:
    """Run a command body; report a CliError or an unexpected error on stderr as `prog: ...`."""
    try:
        return body()
    except CliError as exc:
        if _want_traceback():
            raise
        for line in exc.lines:
            print(f"{prog}: {line}", file=sys.stderr)
        return exc.code
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        if _want_traceback():
            raise
        print(f"{prog}: {one_line(exc)} (PAHT_TRACEBACK=1 shows the traceback)",
              file=sys.stderr)
        return RUNTIME
