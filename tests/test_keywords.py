"""Keyword suggestions from operator corrections: `paht keywords suggest` and the console page."""

from __future__ import annotations

import io
import tomllib

from console_support import CLOCK, make_report, resector

from gateway.domain.keywords import load_corrections, suggest_command
from gateway.keys import SERVICES


async def corrected_app(settings_factory, gateway_client):
    settings = settings_factory(review_policy="all")
    client = await gateway_client(settings)
    # An operator files each clock report under a sector the classifier never proposed.
    csrf = await resector(client, CLOCK, "vien_thong")
    # A confirmation without a change is not a correction.
    same = await make_report(client.app, "Đèn đường không sáng")
    await client.post(f"/console/reports/{same.id}/confirm", data={"csrf": csrf})
    return settings, client


async def test_corrections_are_read_from_the_audit_log(settings_factory, gateway_client) -> None:
    _, client = await corrected_app(settings_factory, gateway_client)
    async with client.app[SERVICES].sessions() as s:
        corrections = await load_corrections(s)
    assert [c[0] for c in corrections] == CLOCK
    assert all(before != after for _, before, after in corrections)


async def test_suggest_command_prints_a_toml_snippet(settings_factory, gateway_client) -> None:
    settings, _client = await corrected_app(settings_factory, gateway_client)
    out = io.StringIO()
    assert await suggest_command(settings, 3, out) == 0
    text = out.getvalue()
    assert text.startswith("# 3 operator corrections read")
    data = tomllib.loads(text)
    [(sector, body)] = data["sectors"].items()
    assert sector == "vien_thong"
    assert any("đồng hồ" in phrase for phrase in body["suggested"])
    # A higher threshold than the evidence gives nothing to add.
    out = io.StringIO()
    await suggest_command(settings, 4, out)
    assert "[sectors." not in out.getvalue()


async def test_keywords_page_shows_the_same_snippet(settings_factory, gateway_client) -> None:
    _settings, client = await corrected_app(settings_factory, gateway_client)
    html = await (await client.get("/console/keywords?min_count=3")).text()
    assert 'id="snippet"' in html and "đồng hồ" in html and "3 phản ánh" in html
    none = await (await client.get("/console/keywords?min_count=9")).text()
    assert 'id="no-suggestions"' in none


def test_cli_is_wired() -> None:
    from gateway.cli import build_parser

    args = build_parser().parse_args(["keywords", "suggest", "--min-count", "3"])
    assert args.min_count == 3 and args.func.__name__ == "_keywords_suggest"
