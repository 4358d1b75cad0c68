"""The report life cycle (gateway/domain/lifecycle.py), on SQLite and on PostgreSQL: every
allowed step and what it writes (status, timestamp, history, audit row for operators, forward
row on confirmation, citizen notices), every illegal (from, to) pair refused with nothing
written, late central events ignored, and merged reports shown in Open311 and the API."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
from sqlmodel import col, select

from gateway.domain.lifecycle import (
    CENTRAL,
    TRANSITIONS,
    Actor,
    IllegalTransition,
    Lifecycle,
    allowed,
    check,
)
from store.models import (
    Citizen,
    Identity,
    Operator,
    OperatorAction,
    Outbox,
    Report,
    ReportHistory,
    ReportStatus,
)

try:
    from tests.fakes.central import make_services
except ImportError:  # tests/ is not a package: pytest put tests/ itself on sys.path
    from fakes.central import make_services  # type: ignore[no-redef]

S = ReportStatus
# The table of the design, written out here so that a change to the data is a visible change.
EXPECTED = {
    (S.DRAFT, S.SUBMITTED), (S.DRAFT, S.REJECTED),
    (S.SUBMITTED, S.CONFIRMED), (S.SUBMITTED, S.REJECTED), (S.SUBMITTED, S.MERGED),
    (S.CONFIRMED, S.FORWARDED), (S.CONFIRMED, S.IN_PROGRESS), (S.CONFIRMED, S.RESOLVED),
    (S.CONFIRMED, S.REJECTED), (S.CONFIRMED, S.MERGED),
    (S.FORWARDED, S.IN_PROGRESS), (S.FORWARDED, S.RESOLVED), (S.FORWARDED, S.REJECTED),
    (S.FORWARDED, S.MERGED),
    (S.IN_PROGRESS, S.RESOLVED), (S.IN_PROGRESS, S.REJECTED), (S.IN_PROGRESS, S.MERGED),
}
ALLOWED = sorted(EXPECTED)
ILLEGAL = sorted((a, b) for a in S for b in S if (a, b) not in EXPECTED)
NOTICE = {S.FORWARDED, S.IN_PROGRESS, S.RESOLVED, S.REJECTED, S.MERGED}


def test_the_table_is_the_designs() -> None:
    assert {(a, b) for a, nxt in TRANSITIONS.items() for b in nxt} == EXPECTED
    assert set(TRANSITIONS) == set(S)
    assert len(ALLOWED) + len(ILLEGAL) == len(S) ** 2
    for a, b in ALLOWED:
        assert allowed(a, b)
        check(a, b)
    for a, b in ILLEGAL:
        assert not allowed(a, b)
        with pytest.raises(IllegalTransition):
            check(a, b)
    assert not allowed("draft", "nonsense") and not allowed("nonsense", "draft")


def test_actor_is_validated() -> None:
    assert Actor.operator(7) == Actor("operator", 7)
    for bad in (("operator", None), ("classifier", 3), ("robot", None)):  # an operator is
        with pytest.raises(ValueError):  # always someone, and only an operator has an id
            Actor(*bad)  # type: ignore[arg-type]


@dataclass
class World:
    """Services on one database, a Lifecycle, an operator account and a report counter."""

    services: Any
    life: Lifecycle
    operator_id: int
    n: int = 0

    async def report(self, status: ReportStatus, **fields: Any) -> Report:
        """A citizen with a Telegram identity and a report in `status`."""
        self.n += 1
        async with self.services.sessions() as session:
            citizen = Citizen(display_name=f"Dân {self.n}")
            session.add(citizen)
            await session.flush()
            urn = f"telegram:{9000 + self.n}"
            session.add(Identity(urn=urn, channel="telegram", citizen_id=citizen.id or 0))
            code = None if status == S.DRAFT else f"PA-2611-{self.n:06d}"
            values: dict[str, Any] = {"code": code, "channel": "telegram",
                                      "citizen_id": citizen.id, "sender": urn,
                                      "text": "Đèn đường hỏng", "status": status,
                                      "agency": "Sở Xây dựng", **fields}
            report = Report(**values)
            session.add(report)
            await session.commit()
            await session.refresh(report)
            return report


@pytest.fixture
async def world(db_url: str, settings_factory: Any) -> AsyncIterator[World]:
    services = make_services(settings_factory(database_url=db_url))
    async with services.sessions() as session:
        op = Operator(username="canbo", password_hash="x")
        session.add(op)
        await session.commit()
        op_id = op.id or 0
    try:
        yield World(services, services.lifecycle, op_id)
    finally:
        await services.engine.dispose()


async def step(w: World, session: Any, report: Report, target: ReportStatus,
               original: Report | None) -> Any:
    """Take `report` to `target` with the life-cycle method for that target (strict ones)."""
    op = Actor.operator(w.operator_id)
    life = w.life
    if target == S.SUBMITTED:
        if report.code is None:
            report.code = f"PA-2611-{900000 + (report.id or 0)}"
        return await life.submit(session, report)
    if target == S.CONFIRMED:
        return await life.confirm(session, report, op)
    if target == S.FORWARDED:
        return await life.forward(session, report, "C-1")
    if target == S.IN_PROGRESS:
        return await life.start(session, report, CENTRAL, "Đã giao đội", "Công ty Chiếu sáng")
    if target == S.RESOLVED:
        return await life.resolve(session, report, CENTRAL, "Đã thay bóng")
    if target == S.REJECTED:
        if report.status == S.DRAFT:
            return await life.cancel_draft(session, report, "cancelled_by_citizen")
        return await life.reject(session, report, op, "Nội dung quảng cáo", "spam")
    if target == S.MERGED:
        assert original is not None
        return await life.merge(session, report, original, op)
    raise AssertionError(f"no method moves a report to {target}")


async def snapshot(w: World, report_id: int) -> dict[str, Any]:
    """Everything a step may write about one report."""
    async with w.services.sessions() as s:
        report = await s.get(Report, report_id)
        assert report is not None
        history = (await s.exec(select(ReportHistory).where(
            ReportHistory.report_id == report_id).order_by(col(ReportHistory.id)))).all()
        audit = (await s.exec(select(OperatorAction).where(
            OperatorAction.report_id == report_id))).all()
        outbox = (await s.exec(select(Outbox).order_by(col(Outbox.id)))).all()
        return {
            "report": report.model_dump(),
            "history": [(h.status, h.source, h.note) for h in history],
            "audit": [(a.action, a.operator_id, a.before, a.after, a.note) for a in audit],
            "outbox": [(o.kind, o.dedup_key, o.recipient, o.payload.get("text"))
                       for o in outbox],
        }


@pytest.mark.parametrize(("start", "target"), ALLOWED, ids=[f"{a}->{b}" for a, b in ALLOWED])
async def test_every_allowed_step_writes_what_it_should(world: World, start: ReportStatus,
                                                        target: ReportStatus) -> None:
    original = await world.report(S.FORWARDED) if target == S.MERGED else None
    report = await world.report(start)
    before = await snapshot(world, report.id or 0)
    async with world.services.sessions() as session:
        report = await session.get(Report, report.id)
        fresh_original = await session.get(Report, original.id) if original else None
        assert report is not None
        await step(world, session, report, target, fresh_original)
        await session.commit()
    after = await snapshot(world, report.id or 0)
    row = after["report"]
    assert row["status"] == target
    assert row["updated_at"] > before["report"]["updated_at"]
    # One history row, by whoever acted.
    operator_step = target in (S.CONFIRMED, S.MERGED) or (
        target == S.REJECTED and start != S.DRAFT)
    central_step = target in (S.IN_PROGRESS, S.RESOLVED)
    source = ("operator" if operator_step else "central" if central_step
              else "gateway" if target == S.FORWARDED else "citizen")
    assert after["history"][len(before["history"]):] == [
        (target, source, after["history"][-1][2])]
    # An audit row exactly when an operator acted, with the before and after.
    if operator_step:
        [(action, op_id, was, now, _)] = after["audit"]
        assert op_id == world.operator_id
        assert was["status"] == start and now["status"] == target
        assert action == {S.CONFIRMED: "confirm", S.MERGED: "merge",
                          S.REJECTED: "reject"}[target]
    else:
        assert after["audit"] == []
    # Timestamps of the step.
    if target == S.SUBMITTED:
        assert row["submitted_at"] is not None and row["code"]
    if target == S.CONFIRMED:
        assert row["confirmed_at"] is not None
    closes = target in (S.RESOLVED, S.REJECTED) and start != S.DRAFT
    assert (row["resolved_at"] is not None) == closes
    # The outbox: the forward row on confirmation, notices for what the citizen hears of.
    new = after["outbox"][len(before["outbox"]):]
    code, urn = row["code"], row["sender"]
    expected_keys = []
    if target == S.CONFIRMED:
        expected_keys.append(("forward", f"forward:{code}"))
    if target in NOTICE and start != S.DRAFT:  # a cancelled draft: the dialog answers itself
        expected_keys.append(("notify", f"notify:{code}:{target}:{urn}"))
    if target == S.RESOLVED:
        expected_keys.append(("notify", f"rate:{code}"))
    if target == S.MERGED:  # the original is at the centre: the centre learns of the link
        expected_keys.append(("forward", f"link:{code}"))
    assert [(kind, key) for kind, key, _, _ in new] == expected_keys
    assert all(recipient in (None, urn) for _, _, recipient, _ in new)
    if target == S.REJECTED and start != S.DRAFT:
        assert new[0][3] == f"Phản ánh {code} không được tiếp nhận: Nội dung quảng cáo"
        assert "spam" in row["flags"]
    if target == S.REJECTED and start == S.DRAFT:
        assert "cancelled_by_citizen" in row["flags"]
    if target == S.IN_PROGRESS:
        assert row["agency"] == "Công ty Chiếu sáng"
    if target == S.MERGED:
        assert original is not None
        assert row["duplicate_of"] == original.id and "duplicate" in row["flags"]
        assert after["history"][-1][2] == f"Trùng với phản ánh {original.code}"
        assert original.code in new[0][3]
        orig = (await snapshot(world, original.id or 0))["report"]
        assert f"subscriber:{row['citizen_id']}" in orig["flags"]


async def test_every_illegal_pair_raises_and_writes_nothing(world: World) -> None:
    for start, target in ILLEGAL:
        if target == S.DRAFT:  # no method takes a report back to draft; check() refuses it
            continue
        original = await world.report(S.CONFIRMED) if target == S.MERGED else None
        report = await world.report(start)
        before = await snapshot(world, report.id or 0)
        orig_before = await snapshot(world, original.id or 0) if original else None
        async with world.services.sessions() as session:
            loaded = await session.get(Report, report.id)
            fresh_original = await session.get(Report, original.id) if original else None
            assert loaded is not None
            with pytest.raises(IllegalTransition):
                await step(world, session, loaded, target, fresh_original)
            await session.commit()  # whatever the refused step might have left would persist
        assert await snapshot(world, report.id or 0) == before, (start, target)
        if original is not None:
            assert await snapshot(world, original.id or 0) == orig_before, (start, target)


async def test_merge_needs_an_open_original(world: World) -> None:
    op = Actor.operator(world.operator_id)
    report = await world.report(S.SUBMITTED)
    closed = await world.report(S.RESOLVED)
    dup = await world.report(S.MERGED)
    async with world.services.sessions() as session:
        loaded = await session.get(Report, report.id)
        assert loaded is not None
        for bad in (loaded, await session.get(Report, closed.id),
                    await session.get(Report, dup.id)):
            assert bad is not None
            with pytest.raises(IllegalTransition):
                await world.life.merge(session, loaded, bad, op)
        await session.commit()
    assert (await snapshot(world, report.id or 0))["report"]["status"] == S.SUBMITTED


async def test_merge_moves_followers_and_duplicates_to_the_new_original(world: World) -> None:
    op = Actor.operator(world.operator_id)
    first = await world.report(S.FORWARDED)
    second = await world.report(S.FORWARDED)
    third = await world.report(S.SUBMITTED)
    async with world.services.sessions() as session:
        a, b, c = [await session.get(Report, r.id) for r in (first, second, third)]
        assert a is not None and b is not None and c is not None
        await world.life.merge(session, c, b, op)  # c follows b ...
        await world.life.merge(session, b, a, op)  # ... then b, and with it c, follows a
        await session.commit()
    a_row = (await snapshot(world, first.id or 0))["report"]
    assert {f"subscriber:{second.citizen_id}", f"subscriber:{third.citizen_id}"} <= set(
        a_row["flags"])
    c_row = (await snapshot(world, third.id or 0))["report"]
    assert c_row["duplicate_of"] == first.id  # never a chain of duplicates


@pytest.mark.parametrize("status", list(S))
async def test_late_or_unknown_central_events_are_ignored(world: World,
                                                          status: ReportStatus) -> None:
    report = await world.report(status)
    before = await snapshot(world, report.id or 0)
    known = status in (S.CONFIRMED, S.FORWARDED, S.IN_PROGRESS)  # what the centre has seen
    async with world.services.sessions() as session:
        loaded = await session.get(Report, report.id)
        assert loaded is not None
        for event in ("in_progress", "resolved", "rejected", "forwarded", "bogus"):
            if known and allowed(status, event) and event != "forwarded":
                continue  # a step on: applied (test_every_allowed_step_writes_what_it_should)
            assert not await world.life.apply_central(session, loaded, event, "x", "y"), event
        if status != S.CONFIRMED:
            assert not await world.life.mark_forwarded(session, loaded, None)
        await session.commit()
    assert await snapshot(world, report.id or 0) == before


async def test_central_steps_and_receipts(world: World) -> None:
    report = await world.report(S.CONFIRMED)
    async with world.services.sessions() as session:
        loaded = await session.get(Report, report.id)
        assert loaded is not None
        assert await world.life.apply_central(session, loaded, "in_progress", agency="UBND")
        # The delivery receipt arrives after the centre already answered: ref kept, no step.
        assert not await world.life.mark_forwarded(session, loaded, "C-9")
        assert not await world.life.apply_central(session, loaded, "in_progress")
        assert await world.life.apply_central(session, loaded, "rejected", "Sai thẩm quyền")
        assert not await world.life.apply_central(session, loaded, "resolved")
        await session.commit()
    after = await snapshot(world, report.id or 0)
    assert after["report"]["central_ref"] == "C-9" and after["report"]["agency"] == "UBND"
    assert after["history"] == [("in_progress", "central", None),
                                ("rejected", "central", "Sai thẩm quyền")]
    assert after["audit"] == []


async def test_submit_and_confirm_wrappers(world: World) -> None:
    from gateway.domain import reports

    draft = await world.report(S.DRAFT)
    async with world.services.sessions() as session:
        loaded = await session.get(Report, draft.id)
        assert loaded is not None
        await reports.submit(session, world.services, loaded)  # no classifier: waits
        assert loaded.status == S.SUBMITTED and loaded.code and loaded.needs_review
        await reports.confirm(session, world.services, loaded, operator_id=world.operator_id)
        await session.commit()
    after = await snapshot(world, draft.id or 0)
    assert [h[:2] for h in after["history"]] == [("submitted", "citizen"),
                                                  ("confirmed", "operator")]
    assert [a[0] for a in after["audit"]] == ["confirm"]


async def test_status_line_of_a_merged_report(world: World) -> None:
    original = await world.report(S.FORWARDED)
    dup = await world.report(S.MERGED, duplicate_of=original.id)
    async with world.services.sessions() as session:
        line = await world.life.status_line(session, dup)
    assert f"đã được gộp với phản ánh {original.code}" in line
    assert "bạn" not in line.lower().split()


async def test_open311_and_api_show_a_merged_report(settings_factory: Any,
                                                    gateway_client: Any) -> None:
    from gateway.keys import SERVICES

    client = await gateway_client(settings_factory())
    services = client.app[SERVICES]
    life = services.lifecycle
    async with services.sessions() as session:
        citizen = Citizen()
        session.add(citizen)
        await session.flush()
        rows = [Report(code=f"PA-2611-00000{n}", channel="telegram", citizen_id=citizen.id or 0,
                       sender=f"telegram:{n}", text="Cống nghẹt", status=S.FORWARDED,
                       submitted_at=citizen.created_at) for n in (1, 2)]
        session.add_all(rows)
        await session.flush()
        original, dup = rows
        await life.merge(session, dup, original, Actor("gateway"))
        await session.commit()

    async def request(code: str) -> dict[str, Any]:
        resp = await client.get(f"/open311/v2/requests/{code}.json")
        return (await resp.json())[0]

    async def listed(status: str) -> set[str]:
        resp = await client.get("/open311/v2/requests.json", params={"status": status})
        return {r["service_request_id"] for r in await resp.json()}

    item = await request("PA-2611-000002")
    assert item["status"] == "open" and "PA-2611-000001" in item["status_notes"]
    assert await listed("open") == {"PA-2611-000001", "PA-2611-000002"}
    auth = {"Authorization": "Bearer test-token"}
    detail = await (await client.get("/api/v1/reports/PA-2611-000002", headers=auth)).json()
    assert detail["status"] == "merged" and detail["duplicate_of"] == "PA-2611-000001"
    merged = await (await client.get("/api/v1/reports", headers=auth,
                                     params={"status": "merged"})).json()
    assert [i["code"] for i in merged["items"]] == ["PA-2611-000002"]
    # The original is resolved: the merged request closes with it.
    async with services.sessions() as session:
        first = await session.get(Report, original.id)
        assert first is not None
        assert await life.apply_central(session, first, "resolved", "Đã thông cống")
        await session.commit()
    assert (await request("PA-2611-000002"))["status"] == "closed"
    assert await listed("open") == set()
    assert await listed("closed") == {"PA-2611-000001", "PA-2611-000002"}
