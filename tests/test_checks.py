"""The suite's assertions (illusion.checks): a verdict becomes pass, xfail or a failure whose message
shows untrusted text escaped."""

from __future__ import annotations

from dataclasses import replace

import pytest

from illusion.checks import check_consistency
from illusion.data import Item
from illusion.results import ItemResult
from illusion.verdict import ItemVerdict
from suite_world import BIDI, HOSTILE, RAW

ITEM = Item(id="q1", lang="en", question="Where?", answer="Paris", aliases=(), distractors=("Lyon", "Nice", "Metz"),
            type="place")
MC_RIGHT, MC_WRONG = (0.0, -1.0, -2.0, -3.0), (-3.0, 0.0, -1.0, -2.0)


def result(mc_scores: tuple[float, ...], generation: str) -> ItemResult:
    """``generation`` is judged as the probe judges it: correct when it names the gold."""
    return ItemResult(lang="en", id="q1", prompt="p", options=(ITEM.answer, *ITEM.distractors), mc_scores=mc_scores,
                      generation=generation, gold_rank=1, first_position_rank=1,
                      matched=ITEM.answer if generation == ITEM.answer else None)


def test_an_item_the_candidate_says_passes():
    check_consistency(ItemVerdict(candidate=result(MC_RIGHT, "Paris"), reference=result(MC_WRONG, "Lyon")), ITEM)


def test_an_illusion_the_reference_shares_xfails_naming_its_answer():
    illusion = result(MC_RIGHT, "Lyon")
    with pytest.raises(pytest.xfail.Exception, match=r"pre-existing illusion: .*\(reference greedy: 'Lyon'\)"):
        check_consistency(ItemVerdict(candidate=illusion, reference=illusion), ITEM)


def test_a_new_illusion_fails_without_a_traceback():
    with pytest.raises(pytest.fail.Exception) as failed:
        check_consistency(ItemVerdict(candidate=result(MC_RIGHT, "Lyon"), reference=result(MC_WRONG, "Lyon")), ITEM)
    assert not failed.value.pytrace and "[en-q1] recognition-only" in str(failed.value)


def test_model_output_reaches_the_failure_message_escaped():
    hostile = Item(id="q1", lang="en", question="Where?" + HOSTILE, answer="Paris" + BIDI, aliases=("\u2066P",),
                   distractors=("Lyon\x9b2J", "Nice", "Metz"), type="place")
    said = "Lyon\x9b2J " + HOSTILE + "\u2067"
    cand = ItemResult(lang="en", id="q1", prompt="p", options=(hostile.answer, *hostile.distractors),
                      mc_scores=(0.0, -1.0, -2.0, -3.0), generation=said, gold_rank=3, first_position_rank=3,
                      hedged_with=("Lyon\x9b2J",))
    ref = replace(cand, mc_scores=(-3.0, 0.0, -1.0, -2.0))  # the reference does not pick the gold: a new illusion
    with pytest.raises(pytest.fail.Exception) as failed:
        check_consistency(ItemVerdict(candidate=cand, reference=ref), hostile)
    message = str(failed.value)
    assert not RAW.search(message), RAW.findall(message)
    assert "Paris\\u202e" in message and "Lyon\\x9b2J" in message and "\\u2067" in message

