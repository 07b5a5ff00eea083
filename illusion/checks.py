"""The suite's assertions (``illusion_tests``): a verdict made a pytest outcome with its message.

The gold-rank check lives with its baseline workflow (``snapshots.check_gold_rank``).
"""

from __future__ import annotations

import pytest

from .terminal import safe_text
from .verdict import ItemVerdict, LanguageGate


def check_consistency(verdict: ItemVerdict, item) -> None:
    """The suite's core assertion: MC-correct implies generation-correct for the candidate."""
    from .report import consistency_message

    if verdict.outcome == "pass":
        return
    if verdict.outcome == "xfail":
        pytest.xfail(safe_text("pre-existing illusion: the reference is recognition-only on this item too "
                               f"(reference greedy: {verdict.reference.generation!r})"))
    pytest.fail(consistency_message(verdict, item), pytrace=False)


def check_language_gate(gate: LanguageGate) -> None:
    """A language fails when the candidate significantly loses answers it still recognises."""
    if not gate.passed:
        pytest.fail(safe_text(gate.message(), lines=True), pytrace=False)
