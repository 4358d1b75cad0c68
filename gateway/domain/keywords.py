"""`paht keywords suggest`: phrases to add to config/sectors.toml, mined from the sector
corrections operators made in the console (OperatorAction "change_sector"); `paht keywords
evaluate FILE`: a proposed sectors.toml replayed against every report operators judged
(confirmed or re-sectored), with accuracy, review rate and the decisions that change."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, TextIO

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from gateway.domain.reports import report_text
from gateway.settings import Settings
from store import migrate
from store.db import create_engine, is_sqlite, session_factory
from store.repos import operators as operators_repo
from store.repos import reports as reports_repo

log = logging.getLogger("paht.keywords")


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


# -- `paht keywords evaluate FILE`: replay a proposed sectors.toml on judged reports ----------

async def load_judgements(session: AsyncSession,
                          limit: int | None = None) -> list[tuple[str, str]]:
    """(report text, the sector an operator settled on) per report an operator confirmed or
    re-sectored (the `limit` reports judged last); the last judgement of a report wins."""
    final: dict[int, tuple[str, str]] = {}
    for action, report in await reports_repo.operator_judgements(session, limit=limit):
        sector = str(action.after.get("sector") or "")
        text = report_text(report)
        if sector and text.strip():
            final[report.id or 0] = (text, sector)
    return list(final.values())


async def recent_judgements(settings: Settings,
                            sessions: async_sessionmaker[AsyncSession]) -> list[tuple[str, str]]:
    """The newest `PAHT_LEARN_FROM_OPERATORS` judgements, for the second opinion to learn
    (none when it is 0 or the store cannot answer yet: the shipped examples suffice)."""
    if settings.learn_from_operators <= 0:
        return []
    try:
        async with sessions() as session:
            return await load_judgements(session, settings.learn_from_operators)
    except SQLAlchemyError:
        log.warning("operator judgements not readable; the second opinion learns the examples")
        return []


def evaluate(examples: list[tuple[str, str]], before: Any, after: Any) -> dict[str, Any]:
    """Accuracy and review rate of both classifiers on `examples`, and every decision that
    changed (sector or review) between them."""
    out: dict[str, Any] = {"n": len(examples), "changed": []}
    stats = {"before": [0, 0, 0], "after": [0, 0, 0]}  # right, reviewed, wrong but auto
    for text, gold in examples:
        verdicts = {}
        for name, clf in (("before", before), ("after", after)):
            res = clf.classify(text)
            verdicts[name] = res
            stats[name][0] += res.sector == gold
            stats[name][1] += bool(res.needs_review)
            stats[name][2] += res.sector != gold and not res.needs_review
        b, a = verdicts["before"], verdicts["after"]
        if (b.sector, b.needs_review) != (a.sector, a.needs_review):
            out["changed"].append({"text": text[:120], "gold": gold,
                                   "before": b.sector, "before_review": b.needs_review,
                                   "after": a.sector, "after_review": a.needs_review})
    n = max(1, len(examples))
    for name, (right, reviewed, wrong_auto) in stats.items():
        out[name] = {"accuracy": right / n, "review_rate": reviewed / n,
                     "wrong_auto_accepted": wrong_auto}
    return out


def format_evaluation(result: dict[str, Any]) -> str:
    """The evaluation as text for the terminal."""
    lines = [f"# {result['n']} judged reports"]
    for name in ("before", "after"):
        r = result[name]
        lines.append(f"{name:>6}: accuracy {r['accuracy']:.3f}  review rate "
                     f"{r['review_rate']:.3f}  wrong and auto-accepted {r['wrong_auto_accepted']}")
    lines.append(f"# {len(result['changed'])} decisions changed")
    for c in result["changed"]:
        mark = lambda s, rv: f"{s}{' (review)' if rv else ''}"  # noqa: E731
        lines.append(f"- gold {c['gold']}: {mark(c['before'], c['before_review'])} -> "
                     f"{mark(c['after'], c['after_review'])}  | {c['text']}")
    return "\n".join(lines) + "\n"


async def evaluate_command(settings: Settings, proposed: Path, out: TextIO,
                           examples: list[tuple[str, str]] | None = None) -> int:
    """Replay `proposed` (a sectors.toml) against operators' judgements; 0 on success.

    `examples` (`nlp.second_opinion.parse_examples`) replace the database's judgements.
    """
    from nlp.classifier import Classifier

    score, margin = settings.review_min_score, settings.review_min_margin
    before = Classifier.load(settings.config_dir, min_score=score, min_margin=margin)
    after = Classifier.load(settings.config_dir, min_score=score, min_margin=margin,
                            sectors_file=proposed)
    if examples is None:
        if is_sqlite(settings.database_url):
            migrate.upgrade(settings.database_url)
        engine = create_engine(settings.database_url)
        try:
            async with session_factory(engine)() as session:
                examples = await load_judgements(session)
        finally:
            await engine.dispose()
    out.write(format_evaluation(evaluate(examples, before, after)))
    return 0
