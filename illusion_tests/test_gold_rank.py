"""Gold rank must not regress against the committed baseline: ``test_gold_rank[<lang>-<id>]``.

Each item's candidate record (category, MC/generation correctness, gold rank, gold log-prob,
MC margin) is compared with ``snapshots/<set>/<lang>.json``. A worse category, or a gold rank
worse than ``--illusion-rank-tolerance`` allows, fails; improvements pass and are listed.
``--snapshot-update`` records the current values.
"""

from illusion.snapshots import check_gold_rank


def test_gold_rank(illusion_item, illusion_verdict, illusion_snapshot):
    check_gold_rank(illusion_verdict, illusion_item, illusion_snapshot)
