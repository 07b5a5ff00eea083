"""Per-language gate: ``test_language_gate[<lang>]``.

Among the items the candidate still gets MC-correct, an exact McNemar test compares reference
and candidate generation-correctness. The language fails when the candidate loses significantly
(``--illusion-alpha``, default 0.05) or when its illusion rate exceeds ``--illusion-max-illusion-rate``.
"""

from illusion.checks import check_language_gate


def test_language_gate(illusion_gate):
    check_language_gate(illusion_gate)
