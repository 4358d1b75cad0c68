"""The `paht` command line: serve, classify, transcribe, db, operator, keywords, models."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gateway.cli_errors import (
    RUNTIME,
    CliError,
    bind_listener,
    check_config_dir,
    check_database,
    load_settings,
    run_command,
)
from gateway.settings import Settings

if TYPE_CHECKING:
    from aiohttp import web


def _serve(args: argparse.Namespace, settings: Settings) -> int:
    from gateway.app import create_app
    from gateway.ops.logs import setup_logging

    updates: dict[str, object] = {
        k: v for k, v in (("host", args.host), ("port", args.port)) if v is not None
    }
    if args.no_workers:
        updates["run_workers"] = False
    settings = settings.model_copy(update=updates)
    # Bound before the URL is printed: a busy port is reported, never announced as served.
    sock = bind_listener(settings.host, settings.port)
    try:
        setup_logging(settings.log_level, settings.log_json)
        app = create_app(settings)
        if args.telegram_polling:
            from gateway.web.polling import enable_telegram_polling

            enable_telegram_polling(app)
    except BaseException:
        sock.close()
        raise
    host = f"[{settings.host}]" if ":" in settings.host else settings.host
    url = f"http://{host}:{sock.getsockname()[1]}/"
    print(f"PAHT Gateway: mở {url} để gửi phản ánh qua web chat (open {url})", flush=True)
    _run_limited(app, sock, settings)
    return 0


def _run_limited(app: web.Application, sock: Any, settings: Settings) -> None:
    """Serve until SIGINT/SIGTERM with the slow-client limits (gateway/web/server_limits.py)."""
    import signal

    from gateway.web.server_limits import serve

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        await serve(app, sock, max_connections=settings.http_max_connections,
                    header_timeout_s=settings.http_header_timeout_seconds,
                    keepalive_s=settings.http_keepalive_seconds, stop=stop)

    asyncio.run(main())


def _worker(args: argparse.Namespace, settings: Settings) -> int:
    import signal

    from aiohttp import web

    from gateway.app import create_app
    from gateway.ops.logs import setup_logging

    settings = settings.model_copy(update={"run_workers": True})
    setup_logging(settings.log_level, settings.log_json)

    async def run() -> None:
        # The app's cleanup contexts start the worker, outbox and scheduler; no HTTP site.
        runner = web.AppRunner(create_app(settings))
        await runner.setup()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        print("PAHT worker running (no HTTP); Ctrl-C to stop", flush=True)
        await stop.wait()
        await runner.cleanup()

    asyncio.run(run())
    return 0


def _classify(args: argparse.Namespace, settings: Settings) -> int:
    from nlp.classifier import Classifier

    clf = Classifier.load(settings.config_dir, min_score=settings.review_min_score,
                          min_margin=settings.review_min_margin)
    out = sys.stdout
    for line in sys.stdin:
        line = line.rstrip("\n")
        if not line.strip():
            continue
        text = line
        extra: dict[str, object] = {}
        if args.jsonl:
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                print(f"paht classify: bad JSON line: {exc}", file=sys.stderr)
                return 2
            text = str(obj.get("text", ""))
            extra = {k: v for k, v in obj.items() if k == "id"}
        result = clf.classify(text).to_dict()
        out.write(json.dumps({**extra, **result}, ensure_ascii=False) + "\n")
    return 0


def _transcribe(args: argparse.Namespace, settings: Settings) -> int:
    from nlp.speech_cli import transcribe_command

    model = args.model
    if model is None:
        model = settings.whisper_model if args.engine == "whisper" else settings.vosk_model
    return transcribe_command(args.files, args.engine, Path(model) if model else None)


def _models_download(args: argparse.Namespace, settings: Settings) -> int:
    from nlp.models import ModelDownloadError, download_model

    dest = Path(args.dest) if args.dest else settings.var_dir / "models"
    try:
        path = download_model(args.name, dest, sha256=args.sha256, source=args.source)
    except ModelDownloadError as exc:  # nothing is installed: the archive stays in a temp dir
        raise CliError(str(exc), code=RUNTIME) from exc
    print(path)
    print(f"set PAHT_VOSK_MODEL={path}", file=sys.stderr)
    return 0


def _db_upgrade(args: argparse.Namespace, settings: Settings) -> int:
    from store.migrate import upgrade

    upgrade(settings.database_url, args.revision)
    print(f"database at revision {args.revision}")
    return 0


def _operator_add(args: argparse.Namespace, settings: Settings) -> int:
    from gateway.domain.accounts import add_operator

    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = getpass.getpass("Mật khẩu (password): ")
        if password != getpass.getpass("Nhập lại (repeat): "):
            print("passwords differ", file=sys.stderr)
            return 2
    if len(password) < 10:
        print("password must have at least 10 characters", file=sys.stderr)
        return 2
    asyncio.run(add_operator(settings, args.name, password, args.role, args.display_name))
    print(f"operator {args.name} ({args.role}) saved")
    return 0


def _keywords_suggest(args: argparse.Namespace, settings: Settings) -> int:
    from gateway.domain.keywords import suggest_command

    return asyncio.run(suggest_command(settings, args.min_count, sys.stdout))


def _keywords_evaluate(args: argparse.Namespace, settings: Settings) -> int:
    from gateway.domain.keywords import evaluate_command
    from nlp.second_opinion import parse_examples

    proposed = Path(args.file)
    for path in (proposed, *([Path(args.examples)] if args.examples else [])):
        if not path.is_file():
            raise CliError(f"no such file: {path}")
    try:
        examples = (parse_examples(Path(args.examples).read_text("utf-8"), strict=True)
                    if args.examples else None)
        return asyncio.run(evaluate_command(settings, proposed, sys.stdout, examples))
    except (ValueError, KeyError) as exc:  # a malformed TOML or examples file
        raise CliError(f"cannot evaluate {proposed}: {exc}") from exc


def _telegram_set_webhook(args: argparse.Namespace, settings: Settings) -> int:
    from channels.telegram_polling import set_webhook

    try:
        result = asyncio.run(set_webhook(settings))
    except ValueError as exc:  # a missing or malformed token/secret: a configuration error
        raise CliError(str(exc)) from exc
    print(json.dumps(result, ensure_ascii=False))
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of `paht`."""
    parser = argparse.ArgumentParser(prog="paht", description="PAHT Gateway")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("serve", help="run the gateway (default 127.0.0.1:8080)")
    p.add_argument("--host")
    p.add_argument("--port", type=int)
    p.add_argument("--telegram-polling", action="store_true",
                   help="fetch Telegram updates by long polling (no public URL needed)")
    p.add_argument("--no-workers", action="store_true",
                   help="only accept webhooks; run `paht worker` in another process")
    p.set_defaults(func=_serve, needs_db=True)

    p = sub.add_parser("worker", help="process stored messages and run scheduled jobs (no HTTP)")
    p.set_defaults(func=_worker, needs_db=True)

    p = sub.add_parser("classify", help="classify text lines from stdin into JSON lines")
    p.add_argument("--jsonl", action="store_true", help="input lines are JSON with a text field")
    p.set_defaults(func=_classify)

    p = sub.add_parser("transcribe", help="transcribe audio files into JSON lines")
    p.add_argument("files", nargs="+")
    p.add_argument("--engine", default="vosk", choices=["vosk", "whisper"])
    p.add_argument("--model", help="model directory (default PAHT_VOSK_MODEL/PAHT_WHISPER_MODEL)")
    p.set_defaults(func=_transcribe)

    p = sub.add_parser("models", help="speech models")
    msub = p.add_subparsers(dest="models_command", required=True)
    d = msub.add_parser("download", help="download an official model (e.g. vi)")
    d.add_argument("name")
    d.add_argument("--dest", help="directory for models (default: var/models)")
    d.add_argument("--sha256", help="expected SHA-256 of the archive (verified when given)")
    d.add_argument("--from", dest="source", metavar="FILE_OR_URL",
                   help="a local zip/tar, an archive URL or a mirror URL ending in / "
                        "(default: alphacephei.com)")
    d.set_defaults(func=_models_download)

    p = sub.add_parser("db", help="database")
    dsub = p.add_subparsers(dest="db_command", required=True)
    u = dsub.add_parser("upgrade", help="apply migrations")
    u.add_argument("revision", nargs="?", default="head")
    u.set_defaults(func=_db_upgrade, needs_db=True)

    p = sub.add_parser("operator", help="console accounts")
    osub = p.add_subparsers(dest="operator_command", required=True)
    a = osub.add_parser("add", help="create or update an operator")
    a.add_argument("name")
    a.add_argument("--role", default="operator", choices=["operator", "supervisor", "admin"])
    a.add_argument("--display-name")
    a.add_argument("--password-stdin", action="store_true")
    a.set_defaults(func=_operator_add, needs_db=True)

    p = sub.add_parser("keywords", help="classifier keywords")
    ksub = p.add_subparsers(dest="keywords_command", required=True)
    s = ksub.add_parser("suggest", help="phrases to add, mined from operator corrections")
    s.add_argument("--min-count", type=int, default=2)
    s.set_defaults(func=_keywords_suggest, needs_db=True)
    e = ksub.add_parser("evaluate", help="replay a proposed sectors.toml on judged reports")
    e.add_argument("file", help="the proposed sectors.toml")
    e.add_argument("--examples", help="JSON lines with text and sector instead of the database")
    e.set_defaults(func=_keywords_evaluate, needs_db=True)

    p = sub.add_parser("telegram", help="Telegram bot")
    tsub = p.add_subparsers(dest="telegram_command", required=True)
    w = tsub.add_parser("set-webhook", help="register PAHT_PUBLIC_BASE_URL/webhooks/telegram")
    w.set_defaults(func=_telegram_set_webhook)
    return parser


def _command_name(args: argparse.Namespace) -> str:
    sub = getattr(args, f"{args.command}_command", None)
    return " ".join(["paht", args.command, *([sub] if sub else [])])


def _run(args: argparse.Namespace) -> int:
    """Check settings, config directory and (for commands that use it) the database; run."""
    settings = load_settings()
    check_config_dir(settings)
    if getattr(args, "needs_db", False):
        check_database(settings)
    code: int = args.func(args, settings)
    return code


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of the `paht` console script."""
    args = build_parser().parse_args(argv)
    raise SystemExit(run_command(lambda: _run(args), _command_name(args)))
