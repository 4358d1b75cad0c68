"""The second opinion: a naive Bayes model learnt from settled reports, and how the review gate
uses it (disagreement -> an operator, firm agreement -> soft doubts dropped)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from console_support import CLOCK, resector

from gateway.domain.keywords import load_judgements
from gateway.keys import SERVICES
from gateway.workers.learning import relearn_loop, relearn_once
from nlp.classifier import Classifier
from nlp.second_opinion import SecondOpinion, features, parse_examples, read_examples

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "config" / "examples"


def test_features_are_syllables_and_pairs() -> None:
    assert features(("den", "duong", "tat")) == {"den", "duong", "tat", "den duong",
                                                  "duong tat"}
    assert features(()) == frozenset()


def test_training_favours_the_sector_of_its_words() -> None:
    model = SecondOpinion.train([({"ngap", "nuoc"}, "a"), ({"ngap", "mua"}, "a"),
                                 ({"den", "tat"}, "b")], ["a", "b", "c"])
    logs = model.log_probabilities(("ngap",))
    assert max(logs, key=logs.__getitem__) == "a"
    assert math.isclose(sum(math.exp(v) for v in logs.values()), 1.0)
    # Unknown words leave the prior: "c" had no example but is never ruled out.
    prior = model.log_probabilities(("khong", "biet"))
    # Pairs count too: "ngap nuoc" was seen in "a" only.
    pair = model.log_probabilities(("ngap", "nuoc"))
    assert pair["a"] > logs["a"]
    assert prior["a"] > prior["b"] > prior["c"] > -math.inf
    assert model.examples == 3


def test_examples_of_unknown_sectors_are_skipped() -> None:
    model = SecondOpinion.train([({"x"}, "gone"), ({"y"}, "a")], ["a"])
    assert model.examples == 1


def test_read_examples_keeps_only_labelled_lines(tmp_path: Path) -> None:
    path = tmp_path / "x.jsonl"
    path.write_text('{"text": "đèn tắt", "sector": "ha_tang_do_thi"}\n\n'
                    '{"text": "", "sector": "dien"}\n{"sector": "dien"}\n[1, 2]\n', "utf-8")
    assert read_examples([path]) == [("đèn tắt", "ha_tang_do_thi")]
    # A file handed to `paht keywords evaluate` must be whole: a bad line is an error.
    with pytest.raises(KeyError):
        parse_examples(path.read_text("utf-8"), strict=True)


def test_shipped_examples_are_learnt_once_per_process() -> None:
    shipped = sum(len(read_examples([p])) for p in EXAMPLES.glob("*.jsonl"))
    first, second = Classifier.load(), Classifier.load()
    assert first.second_opinion is not None and first.second_opinion.examples == shipped
    assert second.second_opinion is first.second_opinion  # cached, not trained again
    assert Classifier.load(learn=False).second_opinion is None


def test_no_held_out_text_is_an_example() -> None:
    learnt = {t for t, _ in read_examples(EXAMPLES.glob("*.jsonl"))}
    for path in (ROOT / "tests" / "data").glob("heldout_*.jsonl"):
        held = {json.loads(line)["text"] for line in path.read_text("utf-8").splitlines()
                if line.strip()}
        assert not {t for t in held if len(t) > 10} & learnt, path.name


def _taught(pairs: list[tuple[str, str]], **kw: float) -> Classifier:
    clf = Classifier.load(learn=False, **kw)  # type: ignore[arg-type]
    clf.learn(pairs)
    return clf


def test_a_disagreeing_second_opinion_sends_the_verdict_to_review() -> None:
    # Examples that file dark street lights under water supply: the keywords still read a
    # street light, the learnt model reads water supply; an operator decides.
    wrong = _taught([("đèn đường tắt tối om", "cap_nuoc")] * 30
                    + [("mất nước sinh hoạt", "cap_nuoc"),
                       ("rác thải bốc mùi", "ve_sinh_moi_truong")])
    res = wrong.classify("đèn đường tắt tối om cả tuần")
    assert res.second_opinion == "cap_nuoc"
    assert res.needs_review and "second_opinion" in res.reasons
    alone = Classifier.load(learn=False).classify("đèn đường tắt tối om cả tuần")
    assert alone.sector == "ha_tang_do_thi" and "second_opinion" not in alone.reasons


def test_firm_agreement_drops_soft_doubts_but_never_urgency() -> None:
    text = "đèn đường tắt"
    strict = {"min_score": 0.999, "min_margin": 0.99}
    assert Classifier.load(learn=False, **strict).classify(text).needs_review  # type: ignore[arg-type]
    agreed = _taught([("đèn đường tắt", "ha_tang_do_thi")] * 40
                     + [("mất nước", "cap_nuoc"), ("rác bốc mùi", "ve_sinh_moi_truong")],
                     **strict)
    res = agreed.classify(text)
    assert res.second_opinion == "ha_tang_do_thi" and not res.needs_review
    fire = _taught([("cháy nhà khói bốc lên", "an_ninh_trat_tu")] * 40
                   + [("mất nước", "cap_nuoc")])
    res = fire.classify("cháy nhà khói bốc lên nghi ngút")
    assert res.urgent and "urgent" in res.reasons and res.needs_review


def test_a_sector_only_the_model_sees_is_never_acted_on_alone() -> None:
    # No keyword names a lost cat; examples that (wrongly) file it under electricity win the
    # verdict, but it rests on the learnt model alone.
    text = "con mèo tam thể đi lạc hai hôm"
    assert Classifier.load(learn=False).classify(text).evidence_kind == "none"
    clf = _taught([(text, "dien")] * 60 + [("mất nước", "cap_nuoc")])
    res = clf.classify(text)
    assert (res.sector, res.evidence_kind, res.second_opinion) == ("dien", "none", "dien")
    assert res.needs_review and "no_keyword" in res.reasons


def test_empty_text_stays_a_review_case() -> None:
    res = Classifier.load().classify("   ")
    assert res.sector == "khac" and res.reasons == ("empty",)


@pytest.mark.parametrize("text", ["", "alo", "🙂🙂", "a" * 5000, "đ" * 3, "123 456"])
def test_odd_texts_classify(text: str) -> None:
    res = Classifier.load().classify(text)
    assert res.sector and 0.0 <= res.score <= 1.0


async def test_the_gateway_learns_what_operators_settled(settings_factory,
                                                         gateway_client) -> None:
    settings = settings_factory(review_policy="all")
    client = await gateway_client(settings)
    await resector(client, CLOCK, "vien_thong")
    services = client.app[SERVICES]
    shipped = services.classifier.second_opinion.examples
    assert services.classifier.classify("đồng hồ công cộng chết kim").second_opinion != "vien_thong"
    # A running worker process relearns without a restart ...
    assert await relearn_once(services) == len(CLOCK)
    assert services.classifier.second_opinion.examples == shipped + len(CLOCK)
    assert services.classifier.classify("đồng hồ công cộng chết kim").second_opinion == "vien_thong"
    # ... and the next start of the gateway on the same store has learnt them too.
    again = await gateway_client(settings)
    learnt = again.app[SERVICES].classifier
    assert learnt.second_opinion.examples == shipped + len(CLOCK)
    assert learnt.classify("đồng hồ công cộng chết kim").second_opinion == "vien_thong"
    # Only the newest judgements are read (PAHT_LEARN_FROM_OPERATORS), newest last.
    async with services.sessions() as session:
        assert [t for t, _ in await load_judgements(session, 2)] == CLOCK[1:]
    two = await gateway_client(settings.model_copy(update={"learn_from_operators": 2}))
    assert two.app[SERVICES].classifier.second_opinion.examples == shipped + 2
    off = await gateway_client(settings.model_copy(update={"learn_from_operators": 0}))
    assert off.app[SERVICES].classifier.second_opinion.examples == shipped


async def test_the_relearning_loop_runs_on_its_period_and_stops(settings_factory, gateway_client,
                                                                caplog) -> None:
    import asyncio
    import logging

    caplog.set_level(logging.INFO, logger="paht.learning")
    client = await gateway_client(settings_factory(relearn_hours=0.0002))  # every 0.72 s
    services = client.app[SERVICES]
    stop = asyncio.Event()
    task = asyncio.create_task(relearn_loop(services, stop))
    for _ in range(100):
        await asyncio.sleep(0.1)
        if "relearnt" in caplog.text:
            break
    stop.set()
    await asyncio.wait_for(task, timeout=5)
    assert "second opinion relearnt with 0 operator judgements" in caplog.text
    # Nothing new to learn: the model learnt from the same files is kept, not trained again.
    assert services.classifier.second_opinion is Classifier.load().second_opinion
    never = await gateway_client(settings_factory(relearn_hours=0))
    await asyncio.wait_for(relearn_loop(never.app[SERVICES], asyncio.Event()), timeout=1)
