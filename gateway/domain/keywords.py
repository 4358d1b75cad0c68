"""`paht keywords suggest`: phrases to add to config/sectors.toml, mined from the sector
corrections operators made in the console (OperatorAction "change_sector")."""

from __future__ import annotations

from typing import Any, TextIO

from sqlmodel.ext.asyncio.session import AsyncSession

from gateway.domain.reports import report_text
from gateway.settings import Settings
from store import migrate
from store.db import create_engine, is_sqlite, session_factory
from store.repos import operators as operators_repo


async def load_corrections(session: AsyncSession) -> list[tuple[str, str, str]]:
    """(report text, classifier's sector, operator's final sector) per corrected report."""
    rows = await operators_repo.sector_corrections(session)
    first: dict[int, str] = {}
    last: dict[int, str] = {}
    texts: dict[int, str] = {}
    for action, report in rows:
        rid = report.id or 0
        first.setdefault(rid, str(action.before.get("sector") or ""))
        last[rid] = str(action.after.get("sector") or "")
        texts[rid] = report_text(report)
    return [(texts[rid], first[rid], last[rid]) for rid in texts
            if last[rid] and first[rid] != last[rid] and texts[rid].strip()]


def suggestions_snippet(
    corrections: list[tuple[str, str, str]], classifier: Any, min_count: int
) -> tuple[str, dict[str, list[tuple[str, int]]]]:
    """The TOML snippet and the suggestions behind it (nlp.suggest)."""
    from nlp.suggest import suggest_keywords, to_toml_snippet

    suggestions = suggest_keywords(corrections, classifier, min_count)
    return to_toml_snippet(suggestions), suggestions


async def suggest_command(settings: Settings, min_count: int, out: TextIO) -> int:
    """Print the suggestions as a TOML snippet; 0 on success."""
    from nlp.classifier import Classifier

    classifier = Classifier.load(settings.config_dir, min_score=settings.review_min_score,
                                 min_margin=settings.review_min_margin)
    if is_sqlite(settings.database_url):
        migrate.upgrade(settings.database_url)  # a fresh local database has no tables yet
    engine = create_engine(settings.database_url)
    try:
        async with session_factory(engine)() as session:
            corrections = await load_corrections(session)
    finally:
        await engine.dispose()
    snippet, suggestions = suggestions_snippet(corrections, classifier, min_count)
    out.write(f"# {len(corrections)} operator corrections read, "
              f"{sum(len(v) for v in suggestions.values())} phrases suggested "
              f"(min count {min_count}).\n")
    out.write(snippet)
    return 0
