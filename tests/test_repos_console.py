"""The console, reporting and account repositories, on SQLite and on PostgreSQL alike."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from store.db import create_engine, session_factory
from store.models import (
    Citizen,
    InboundEvent,
    Operator,
    OperatorAction,
    Outbox,
    Report,
    ReportHistory,
)
from store.repos import console, operators, stats
from store.repos import reports as reports_repo

T0 = datetime(2026, 3, 2, 3, 0, tzinfo=UTC)


@pytest.fixture
async def sessions(db_url: str):
    engine = create_engine(db_url)
    yield session_factory(engine)
    await engine.dispose()


async def _citizen(sessions: Any) -> int:
    async with sessions() as s:
        c = Citizen(display_name="Lan")
        s.add(c)
        await s.commit()
        return c.id


async def _reports(sessions: Any, *specs: dict[str, Any]) -> list[Report]:
    cid = await _citizen(sessions)
    out = []
    async with sessions() as s:
        for n, spec in enumerate(specs):
            values = {"channel": "telegram", "sender": f"telegram:{n}", "status": "submitted",
                      "created_at": T0, "submitted_at": T0, "text": f"phản ánh {n}", **spec}
            r = Report(citizen_id=cid, code=f"PA-2603-{n:06d}", **values)
            s.add(r)
            out.append(r)
        await s.commit()
    return out


async def _operator(sessions: Any, username: str) -> Operator:
    async with sessions() as s:
        op = Operator(username=username, password_hash="x")
        s.add(op)
        await s.commit()
        return op


async def _add(sessions: Any, *rows: Any) -> None:
    async with sessions() as s:
        for row in rows:
            s.add(row)
        await s.commit()


# Queue -------------------------------------------------------------------------------------

async def test_queue_filters_and_orders_by_waiting_time(sessions) -> None:
    r = await _reports(
        sessions,
        {"status": "draft", "submitted_at": None},
        {"submitted_at": T0 + timedelta(minutes=5)},
        {"submitted_at": None, "created_at": T0 - timedelta(minutes=5)},  # falls back
        {"channel": "zalo", "sector": "moi_truong", "urgent": True},
        {"status": "confirmed", "sector": "moi_truong"},
    )
    async with sessions() as s:
        waiting, total = await console.queue(s, console.QueueFilter(), limit=10)
        # Urgent first, then the longest waiting.
        assert [x.id for x in waiting] == [r[3].id, r[2].id, r[1].id] and total == 3
        everything, total = await console.queue(s, console.QueueFilter(status="all"), 10)
        assert r[0].id not in {x.id for x in everything} and total == 4
        zalo, _ = await console.queue(s, console.QueueFilter(channel="zalo"), 10)
        assert [x.id for x in zalo] == [r[3].id]
        sector, _ = await console.queue(
            s, console.QueueFilter(status="all", sector="moi_truong"), 10)
        assert {x.id for x in sector} == {r[3].id, r[4].id}
        urgent, _ = await console.queue(s, console.QueueFilter(status="all", urgent_only=True),
                                        10)
        assert [x.id for x in urgent] == [r[3].id]
        first, total = await console.queue(s, console.QueueFilter(), limit=1)
        assert [x.id for x in first] == [r[3].id] and total == 3  # total ignores the limit


# Report page -------------------------------------------------------------------------------

async def test_report_page_reads_are_in_order(sessions) -> None:
    (report,) = await _reports(sessions, {})
    op = await _operator(sessions, "lan")
    await _add(
        sessions,
        ReportHistory(report_id=report.id, status="confirmed", at=T0 + timedelta(minutes=2)),
        ReportHistory(report_id=report.id, status="submitted", at=T0),
        OperatorAction(report_id=report.id, operator_id=op.id, action="confirm",
                       at=T0 + timedelta(minutes=2)),
        OperatorAction(report_id=report.id, action="reminder", at=T0 + timedelta(minutes=1)),
        # Providers deliver out of order: the page follows the citizen's own timestamps.
        InboundEvent(channel="telegram", external_id="2", sender="telegram:0",
                     received_at=T0 + timedelta(seconds=5), report_id=report.id),
        InboundEvent(channel="telegram", external_id="1", sender="telegram:0",
                     received_at=T0, report_id=report.id),
        InboundEvent(channel="telegram", external_id="3", sender="telegram:0", received_at=T0),
    )
    async with sessions() as s:
        events = await console.report_events(s, report.id)
        history = await console.report_history(s, report.id)
        actions = await operators.report_actions(s, report.id)
    assert [e.external_id for e in events] == ["1", "2"]
    assert [h.status for h in history] == ["submitted", "confirmed"]
    assert [(a.action.action, a.username) for a in actions] == [("reminder", None),
                                                                 ("confirm", "lan")]


# Duplicate candidates ----------------------------------------------------------------------

async def test_duplicate_candidates_window_statuses_and_order(sessions) -> None:
    r = await _reports(
        sessions,
        {"created_at": T0},  # the report itself
        {"created_at": T0 - timedelta(hours=1)},
        {"created_at": T0 - timedelta(hours=2), "status": "forwarded"},
        {"created_at": T0 - timedelta(hours=30)},  # before the window
        {"created_at": T0 + timedelta(minutes=1)},  # after the report
        {"created_at": T0 - timedelta(hours=3), "status": "rejected"},
        {"created_at": T0 - timedelta(hours=4), "status": "draft"},
    )
    await _add_duplicate(sessions, r[1].id, T0 - timedelta(minutes=30))
    async with sessions() as s:
        found = await console.duplicate_candidates(
            s, exclude_id=r[0].id, statuses=("submitted", "forwarded"),
            since=T0 - timedelta(hours=24), until=T0, limit=10)
        assert [x.id for x in found] == [r[1].id, r[2].id]  # newest first, no duplicates
        limited = await console.duplicate_candidates(
            s, exclude_id=r[0].id, statuses=("submitted", "forwarded"),
            since=T0 - timedelta(hours=24), until=T0, limit=1)
        assert [x.id for x in limited] == [r[1].id]


async def _add_duplicate(sessions: Any, original: int, at: datetime) -> None:
    # A report already merged into another is never offered as an original.
    cid = await _citizen(sessions)
    await _add(sessions, Report(citizen_id=cid, channel="sms", sender="tel:+84905000000",
                                status="submitted", created_at=at, submitted_at=at,
                                duplicate_of=original))


# Deliveries and web replies ----------------------------------------------------------------

async def test_reminders_and_web_replies(sessions) -> None:
    a, b = await _reports(sessions, {}, {})
    await _add(
        sessions,
        OperatorAction(report_id=a.id, action="reminder", after={"audience": "operators"}),
        OperatorAction(report_id=b.id, action="reminder", after={"audience": "supervisors"}),
        OperatorAction(report_id=b.id, action="note"),
        Outbox(kind="reply", recipient="web:s1", payload={"text": "1"}),
        Outbox(kind="forward", recipient="web:s1"),
        Outbox(kind="notify", recipient="web:s1", payload={"text": "2"}),
        Outbox(kind="reply", recipient="web:s2"),
    )
    async with sessions() as s:
        reminders = await console.recent_reminders(s, limit=10)
        replies = await console.replies_to(s, "web:s1", 0, ("reply", "notify"), limit=10)
        later = await console.replies_to(s, "web:s1", replies[0].id, ("reply", "notify"), 10)
    assert [(x.action.after["audience"], x.report.id) for x in reminders] == [
        ("supervisors", b.id), ("operators", a.id)]
    assert [o.payload["text"] for o in replies] == ["1", "2"]
    assert [o.payload["text"] for o in later] == ["2"]


# Operators and the audit log ---------------------------------------------------------------

async def test_login_failures_count_since_the_last_reset(sessions) -> None:
    lan = await _operator(sessions, "lan")
    minh = await _operator(sessions, "minh")

    def failed(op: Operator, minutes: int) -> OperatorAction:
        return OperatorAction(operator_id=op.id, action="login_failed",
                              at=T0 + timedelta(minutes=minutes))

    await _add(sessions, failed(lan, 1), failed(lan, 2),
               OperatorAction(operator_id=lan.id, action="login", at=T0 + timedelta(minutes=3)),
               failed(lan, 4), failed(lan, 5), failed(minh, 5),
               OperatorAction(operator_id=minh.id, action="unlock",
                              at=T0 + timedelta(minutes=6)),
               failed(minh, 7))
    async with sessions() as s:
        assert await operators.recent_login_failures(s, lan.id, T0) == 2
        # The window start counts when it is later than the last reset.
        assert await operators.recent_login_failures(s, lan.id, T0 + timedelta(minutes=4)) == 1
        assert await operators.recent_login_failures(s, minh.id, T0) == 1
        assert await operators.recent_login_failures(s, lan.id, T0 + timedelta(hours=1)) == 0


async def test_operator_lookups_and_last_logout(sessions) -> None:
    minh = await _operator(sessions, "minh")
    await _operator(sessions, "an")
    await _add(sessions,
               OperatorAction(operator_id=minh.id, action="logout", at=T0),
               OperatorAction(operator_id=minh.id, action="logout", at=T0 + timedelta(hours=1)),
               OperatorAction(operator_id=minh.id, action="login", at=T0 + timedelta(hours=2)))
    async with sessions() as s:
        assert await operators.usernames(s) == ["an", "minh"]
        assert [o.username for o in await operators.all_operators(s)] == ["an", "minh"]
        found = await operators.by_username(s, "minh")
        assert found is not None and found.id == minh.id
        assert await operators.by_username(s, "nobody") is None
        assert await operators.last_logout_at(s, minh.id) == T0 + timedelta(hours=1)
        assert await operators.last_logout_at(s, minh.id + 99) is None


async def test_audit_page_filters_and_pages(sessions) -> None:
    (report,) = await _reports(sessions, {})
    lan = await _operator(sessions, "lan")
    await _add(sessions, *[
        OperatorAction(operator_id=lan.id, report_id=report.id, action="confirm",
                       at=T0 + timedelta(minutes=n)) for n in range(5)
    ], OperatorAction(action="login_failed", at=T0 + timedelta(minutes=10)))
    async with sessions() as s:
        rows, total = await operators.audit_page(s, page_size=2)
        assert total == 6 and len(rows) == 2
        assert rows[0].action.action == "login_failed" and rows[0].username is None
        assert rows[1].code == report.code and rows[1].username == "lan"
        last, _ = await operators.audit_page(s, page=3, page_size=2)
        assert [r.action.at for r in last] == [T0 + timedelta(minutes=1), T0]
        mine, total = await operators.audit_page(s, username="lan", action="confirm")
        assert total == 5 and {r.username for r in mine} == {"lan"}
        none, total = await operators.audit_page(s, username="lan", action="login_failed")
        assert none == [] and total == 0


async def test_sector_corrections_in_order(sessions) -> None:
    a, b = await _reports(sessions, {}, {})
    await _add(sessions,
               OperatorAction(report_id=b.id, action="change_sector", at=T0 + timedelta(2),
                              before={"sector": "x"}, after={"sector": "y"}),
               OperatorAction(report_id=a.id, action="change_sector", at=T0,
                              before={"sector": "y"}, after={"sector": "z"}),
               OperatorAction(report_id=a.id, action="confirm", at=T0))
    async with sessions() as s:
        rows = await operators.sector_corrections(s)
    assert [(act.after["sector"], rep.id) for act, rep in rows] == [("z", a.id), ("y", b.id)]


async def test_operator_judgements_of_the_reports_judged_last(sessions) -> None:
    a, b, c = await _reports(sessions, {}, {}, {})
    op = await _operator(sessions, "lan")
    judge = {"operator_id": op.id, "at": T0, "after": {"sector": "dien"}}
    await _add(sessions, OperatorAction(report_id=a.id, action="change_sector", **judge),
               OperatorAction(report_id=b.id, action="confirm", **judge),
               OperatorAction(report_id=a.id, action="confirm", **judge),
               OperatorAction(report_id=c.id, action="confirm", at=T0),  # no operator: automatic
               OperatorAction(report_id=c.id, action="note", **judge))
    async with sessions() as s:
        every = await reports_repo.operator_judgements(s)
        last = await reports_repo.operator_judgements(s, limit=1)
    assert [(act.action, rep.id) for act, rep in every] == [
        ("change_sector", a.id), ("confirm", b.id), ("confirm", a.id)]
    # The newest judgement is of a: both of its actions, none of b's.
    assert [(act.action, rep.id) for act, rep in last] == [("change_sector", a.id),
                                                            ("confirm", a.id)]


# Dashboard, weekly summary, reminders ------------------------------------------------------

async def test_dashboard_reads(sessions) -> None:
    r = await _reports(sessions, {"submitted_at": T0 - timedelta(days=1)},
                       {"submitted_at": T0 + timedelta(hours=1)}, {"submitted_at": T0},
                       {"status": "draft", "submitted_at": None})
    await _add(
        sessions,
        ReportHistory(report_id=r[2].id, status="confirmed", source="classifier"),
        ReportHistory(report_id=r[1].id, status="confirmed", source="operator"),
        ReportHistory(report_id=r[1].id, status="submitted", source="classifier"),
        OperatorAction(report_id=r[1].id, action="change_sector", at=T0 + timedelta(2)),
        OperatorAction(report_id=r[1].id, action="confirm", at=T0 + timedelta(1)),
        OperatorAction(report_id=r[1].id, action="note", at=T0),
        OperatorAction(report_id=r[0].id, action="reject", at=T0),
    )
    async with sessions() as s:
        since = await stats.submitted_since(s, T0)
        ids = [x.id for x in since]
        assert ids == [r[2].id, r[1].id]
        assert await stats.auto_confirmed(s, ids) == {r[2].id}
        actions = await stats.review_actions(s, ids)
        assert [a.action for a in actions] == ["confirm", "change_sector"]
        assert await stats.auto_confirmed(s, []) == set()
        assert await stats.review_actions(s, []) == []


async def test_weekly_counts_and_first_forwarded(sessions) -> None:
    end = T0 + timedelta(days=7)
    r = await _reports(
        sessions,
        {"sector": "moi_truong", "agency": "Sở TN&MT"},
        {"sector": "moi_truong", "agency": "Sở TN&MT", "submitted_at": T0 + timedelta(days=1)},
        {"channel": "zalo"},  # no sector, no agency
        {"submitted_at": end},  # next week
        {"status": "draft"},
        {"resolved_at": T0 + timedelta(days=2), "status": "resolved",
         "submitted_at": T0 - timedelta(days=3)},
    )
    await _add(sessions,
               ReportHistory(report_id=r[5].id, status="forwarded", at=T0 + timedelta(hours=5)),
               ReportHistory(report_id=r[5].id, status="forwarded", at=T0 + timedelta(hours=1)),
               ReportHistory(report_id=r[0].id, status="confirmed", at=T0))
    async with sessions() as s:
        groups = await stats.received_counts(s, T0, end)
        closed = await stats.resolved_between(s, T0, end)
        first = await stats.first_forwarded(s, [r[0].id, r[5].id])
    assert sorted(groups, key=lambda g: (g.channel, g.sector or "")) == [
        stats.ReceivedGroup("telegram", "moi_truong", "Sở TN&MT", 2),
        stats.ReceivedGroup("zalo", None, None, 1),
    ]
    assert [x.id for x in closed] == [r[5].id]
    assert first == {r[5].id: T0 + timedelta(hours=1)}
    assert first[r[5].id].utcoffset() == timedelta(0)  # aware UTC through min()


async def test_reminder_queries(sessions) -> None:
    r = await _reports(
        sessions,
        {"submitted_at": T0 - timedelta(hours=2)},
        {"submitted_at": T0 - timedelta(hours=3)},
        {"submitted_at": T0},  # not waiting long enough
        {"status": "forwarded", "confirmed_at": T0},
        {"status": "in_progress", "confirmed_at": T0 - timedelta(days=1)},
        {"status": "resolved", "confirmed_at": T0},
    )
    await _add(sessions,
               OperatorAction(report_id=r[0].id, action="reminder",
                              after={"audience": "operators"}),
               OperatorAction(report_id=r[1].id, action="reminder",
                              after={"audience": "supervisors"}),
               OperatorAction(report_id=r[1].id, action="note",
                              after={"audience": "operators"}))
    async with sessions() as s:
        waiting = await stats.unconfirmed_before(s, T0 - timedelta(hours=1), limit=10)
        assert [x.id for x in waiting] == [r[1].id, r[0].id]
        assert [x.id for x in await stats.unconfirmed_before(s, T0, limit=1)] == [r[1].id]
        held = await stats.at_agency(s, limit=10)
        assert [x.id for x in held] == [r[4].id, r[3].id]
        ids = [x.id for x in r]
        assert await stats.reminded(s, ids, "operators") == {r[0].id}
        assert await stats.reminded(s, ids, "supervisors") == {r[1].id}
        assert await stats.reminded(s, [], "operators") == set()
