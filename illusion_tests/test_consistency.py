"""MC-correct must imply generation-correct: one test per item, ``test_mc_implies_generation[<lang>-<id>]``.

Fails when the candidate picks the gold option in multiple choice but does not produce it in
greedy generation (the benchmark illusion); xfails when the dense reference already did the same.
"""

from illusion.checks import check_consistency


def test_mc_implies_generation(illusion_item, illusion_verdict):
    check_consistency(illusion_verdict, illusion_item)
