"""Gold-rank snapshots: a committed per-item baseline that fails the build on demotion.

Each ``test_gold_rank[<lang>-<id>]`` compares the candidate's rank record of an item with the
baseline in ``snapshots/<set>/<lang>.json``, one file per language, one item per line (so a pull
request diff shows exactly which items moved). The comparison is tolerant (see ``compare``):
small numeric drifts pass, a worse category or a gold rank beyond the tolerance fails, and an
improvement passes and is listed. ``--snapshot-update`` records the current values exactly.

Storage goes through syrupy (``GoldRankExtension``), which queues writes and flushes them at the
end of each process; the flush merges into the file under a lock, so xdist workers writing the
same language file never lose each other's items.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Literal

from syrupy.data import Snapshot, SnapshotCollection, SnapshotCollections
from syrupy.extensions.base import AbstractSyrupyExtension

from .errors import IllusionError
from .models import cache_root, write_atomic
from .results import ItemResult
from .verdict import Category, category

FORMAT = "benchmark-illusion gold-rank snapshot v1"
TEST_NAME = "test_gold_rank"
FIELDS = ("category", "mc_correct", "gen_correct", "gold_rank", "gold_logprob", "mc_margin")
DIGITS = 2  # gold_logprob and mc_margin are informative: rounded so PR diffs stay quiet
RANK_TOLERANCE_PERCENT = 10  # each tolerance step allows 10% of the baseline rank (see allowed_rank)
NAME = re.compile(r"^test_gold_rank\[(?P<key>[^\]]+)\]$")
Direction = Literal["worse", "better", "same"]


class SnapshotFileError(IllusionError):
    """A snapshot file cannot be read: corrupted, hand-edited wrongly, or not ours."""

    def __init__(self, path: Path, problem: str):
        super().__init__(
            f"snapshot file {path} is unreadable: {problem}. Restore it with `git checkout -- {path}`, "
            "or delete it and record a new baseline with --snapshot-update.")
        self.path = path


def rank_record(result: ItemResult) -> dict[str, Any]:
    """The candidate's snapshot record of one item (field order is the file's order)."""
    return {
        "category": category(result.mc_correct, result.gen_correct),
        "mc_correct": result.mc_correct,
        "gen_correct": result.gen_correct,
        "gold_rank": result.gold_rank,
        "gold_logprob": round(result.gold_logprob, DIGITS),
        "mc_margin": round(result.mc_margin, DIGITS),
    }


# --- the comparison rule -----------------------------------------------------------------------

def allowed_rank(baseline: int, tolerance: int) -> int:
    """The worst gold rank that still passes against ``baseline``.

    A rank may worsen by ``tolerance`` positions or by ``tolerance`` x 10% of the baseline rank,
    whichever is larger. So tolerance 0 allows no worsening at all; tolerance 1 lets rank 1 become
    2 and rank 10 become 11, but rank 1000 may become 1100: far down the distribution, logits are
    close together and a few positions are noise, while near the top every position matters.
    """
    return baseline + max(tolerance, baseline * tolerance * RANK_TOLERANCE_PERCENT // 100)


def rank_direction(baseline: int, current: int, tolerance: int) -> Direction:
    """worse or better only beyond the tolerance band, measured from the higher-ranked side."""
    if current > allowed_rank(baseline, tolerance):
        return "worse"
    if baseline > allowed_rank(current, tolerance):
        return "better"
    return "same"


def category_direction(baseline: Category, current: Category) -> Direction:
    """Losing generation is worse; so is losing MC without gaining generation.

    This gives the issue's rule (both -> anything else, recognition_only -> neither) and extends
    it to generation_only (-> neither or -> recognition_only are worse). Better is the mirror
    image; no change is both worse and better.
    """
    had_mc, had_gen = baseline in ("both", "recognition_only"), baseline in ("both", "generation_only")
    has_mc, has_gen = current in ("both", "recognition_only"), current in ("both", "generation_only")
    lost_gen, gained_gen = had_gen and not has_gen, has_gen and not had_gen
    lost_mc, gained_mc = had_mc and not has_mc, has_mc and not had_mc
    if lost_gen or (lost_mc and not gained_gen):
        return "worse"
    if gained_gen or (gained_mc and not lost_gen):
        return "better"
    return "same"


@dataclass(frozen=True)
class Comparison:
    """One item's record against its baseline."""

    key: str
    baseline: dict[str, Any]
    current: dict[str, Any]
    tolerance: int

    @property
    def category(self) -> Direction:
        return category_direction(self.baseline["category"], self.current["category"])

    @property
    def rank(self) -> Direction:
        return rank_direction(self.baseline["gold_rank"], self.current["gold_rank"], self.tolerance)

    @property
    def regressed(self) -> bool:
        return "worse" in (self.category, self.rank)

    @property
    def improved(self) -> bool:
        return not self.regressed and "better" in (self.category, self.rank)

    def summary(self) -> str:
        """One line: what moved, e.g. ``gold rank 7 -> 1, category recognition_only -> both``."""
        parts = []
        if self.rank != "same":
            parts.append(f"gold rank {self.baseline['gold_rank']} -> {self.current['gold_rank']}")
        if self.category != "same":
            parts.append(f"category {self.baseline['category']} -> {self.current['category']}")
        return ", ".join(parts) or "within tolerance"

    def table(self) -> list[str]:
        """Old versus new, field by field, with the verdict on the two fields that decide."""
        notes = {
            "category": {"worse": "WORSE", "better": "better"}.get(self.category, ""),
            "gold_rank": {"worse": f"WORSE (allowed up to {allowed_rank(self.baseline['gold_rank'], self.tolerance)}"
                                   f" at --illusion-rank-tolerance {self.tolerance})",
                          "better": "better"}.get(self.rank, ""),
        }
        rows = [("field", "baseline", "current", "")]
        rows += [(name, _cell(self.baseline.get(name)), _cell(self.current.get(name)), notes.get(name, ""))
                 for name in FIELDS]
        widths = [max(len(row[i]) for row in rows) for i in range(3)]
        return [f"{a.ljust(widths[0])}  {b.ljust(widths[1])}  {c.ljust(widths[2])}  {d}".rstrip()
                for a, b, c, d in rows]


def compare(key: str, baseline: dict[str, Any], current: dict[str, Any], tolerance: int) -> Comparison:
    return Comparison(key=key, baseline=baseline, current=current, tolerance=tolerance)


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.{DIGITS}f}"
    return "-" if value is None else str(value)


# --- the snapshot set on disk -------------------------------------------------------------------

def set_name(*, model_label: str, recipe_label: str | None, dataset: str | None, dtype: str,
             prompt_format: str) -> str:
    """``<model>/<recipe>/<dataset>-<dtype>-<prompt format>``: one baseline per configuration."""
    data = _slug(dataset) if dataset else "fixtures-qa"
    return f"{model_label}/{recipe_label or 'no-prune'}/{data}-{dtype}-{prompt_format}"


def _slug(text: str) -> str:
    """A dataset's part of a set name: a path's last part (so the name is the same on every
    machine and from every working directory), ``mkqa:`` + its path's last part, ``hf:`` ids whole."""
    prefix, _, rest = text.partition(":") if text.startswith(("mkqa:", "hf:")) else ("", "", text)
    last = rest.rstrip("/\\").replace("\\", "/").split("/")[-1] if "/" in rest and prefix != "hf" else rest
    name = f"{prefix}-{last}" if prefix else last
    return re.sub(r"[^\w.-]+", "-", name).strip("-").lower() or "dataset"


def check_set_name(name: str) -> str:
    """A pinned ``--illusion-snapshot-name`` must stay inside ``snapshots/``."""
    parts = name.replace("\\", "/").split("/")
    if not name.strip() or any(p in ("", ".", "..") or not re.fullmatch(r"[\w.-]+", p) for p in parts):
        raise ValueError(f"--illusion-snapshot-name {name!r}: use letters, digits, '.', '-', '_' "
                         "(and '/' between parts), e.g. release")
    return "/".join(parts)


_READ_CACHE: dict[Path, tuple[tuple[int, int], dict[str, dict[str, Any]]]] = {}


def read_set_file(path: Path) -> dict[str, dict[str, Any]]:
    """``{item key: record}`` from one language file; {} when it does not exist yet.

    Parsed once per file version (each item's test asks again).
    """
    try:
        stat = path.stat()
    except FileNotFoundError:
        return {}
    stamp = (stat.st_mtime_ns, stat.st_size)
    cached = _READ_CACHE.get(path)
    if cached and cached[0] == stamp:
        return dict(cached[1])
    items = _parse_set_file(path)
    _READ_CACHE[path] = (stamp, items)
    return dict(items)


def _parse_set_file(path: Path) -> dict[str, dict[str, Any]]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    except (OSError, UnicodeDecodeError) as exc:
        raise SnapshotFileError(path, str(exc)) from None
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        raise SnapshotFileError(path, f"not valid JSON at line {exc.lineno}, column {exc.colno} ({exc.msg})") from None
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise SnapshotFileError(path, f'expected a JSON object with "format": "{FORMAT}"')
    items = document.get("items")
    if not isinstance(items, dict):
        raise SnapshotFileError(path, '"items" must be an object of item key -> record')
    for key, record in items.items():
        _check_record(path, key, record)
    return items


def _check_record(path: Path, key: str, record: Any) -> None:
    kinds = {"category": str, "mc_correct": bool, "gen_correct": bool, "gold_rank": int,
             "gold_logprob": (int, float), "mc_margin": (int, float)}
    if not isinstance(record, dict):
        raise SnapshotFileError(path, f"item {key!r} is not an object")
    for name, kind in kinds.items():
        value = record.get(name)
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise SnapshotFileError(path, f"item {key!r} field {name!r} is {value!r}, expected {getattr(kind, '__name__', 'a number')}")
    if record["category"] != category(record["mc_correct"], record["gen_correct"]):
        raise SnapshotFileError(path, f"item {key!r}: category {record['category']!r} contradicts mc_correct/gen_correct")
    if record["gold_rank"] < 1:
        raise SnapshotFileError(path, f"item {key!r}: gold_rank must be >= 1")


def render_set_file(items: dict[str, dict[str, Any]], config: dict[str, Any]) -> str:
    """The file text: a header, then one item per line in key order (quiet, reviewable diffs)."""
    lines = [json.dumps(key, ensure_ascii=False) + ": " + json.dumps({f: items[key][f] for f in FIELDS}, ensure_ascii=False)
             for key in sorted(items, key=_natural)]
    body = ",\n  ".join(lines)
    header = json.dumps(config, ensure_ascii=False, sort_keys=True)
    return (f'{{\n"format": {json.dumps(FORMAT)},\n"recorded_with": {header},\n'
            f'"items": {{\n  {body}\n}}\n}}\n' if lines else
            f'{{\n"format": {json.dumps(FORMAT)},\n"recorded_with": {header},\n"items": {{}}\n}}\n')


def _natural(key: str) -> list:
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", key)]


def update_set_file(path: Path, changes: dict[str, dict[str, Any] | None], config: dict[str, Any]) -> None:
    """Merge ``changes`` (None removes an item) into one file, under a lock, written atomically.

    A corrupted file is never overwritten: the error says how to restore it.
    """
    from filelock import FileLock

    lock_dir = cache_root() / "locks"
    lock_dir.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:16]
    with FileLock(str(lock_dir / f"snapshot-{digest}.lock")):
        items = read_set_file(path)
        for key, record in changes.items():
            if record is None:
                items.pop(key, None)
            else:
                items[key] = record
        if items:
            write_atomic(path, render_set_file(items, config).encode("utf-8"))
        else:
            path.unlink(missing_ok=True)


# --- syrupy ----------------------------------------------------------------------------------

class GoldRankExtension(AbstractSyrupyExtension):
    """Stores rank records in ``<root>/<lang>.json``; tolerant ``matches`` unless updating.

    syrupy rewrites a snapshot only when ``matches`` is False, so a tolerant comparison alone
    would never record an improvement: with ``--snapshot-update`` matching is exact, and every
    changed record is written. Configure a subclass per run with ``configured``.
    """

    root: Path = Path("snapshots")
    tolerance: int = 0
    exact: bool = False
    recorded_with: dict[str, Any] = {}

    @classmethod
    def configured(cls, *, root: Path, tolerance: int, exact: bool, recorded_with: dict[str, Any]):
        return type("GoldRankExtension", (cls,), {"root": root, "tolerance": tolerance, "exact": exact,
                                                  "recorded_with": recorded_with})

    # where
    @classmethod
    def dirname(cls, *, test_location) -> str:
        return str(cls.root)

    @classmethod
    def get_location(cls, *, test_location, index) -> str:
        item = test_location.item.callspec.params["illusion_item"]
        return str(cls.root / f"{item.lang}.json")

    @classmethod
    def matches_test_location(cls, *, test_location, snapshot_location: str) -> bool:
        return Path(snapshot_location).parent == cls.root

    def discover_snapshots(self, *, test_location, ignore_extensions=None) -> SnapshotCollections:
        """Nothing: syrupy's unused detection goes by test file names, which these files do not
        follow, and would delete baselines of languages a run did not select. The plugin reports
        unused baselines itself (``unused_keys``)."""
        return SnapshotCollections()

    # what
    def serialize(self, data, **_: Any) -> str:
        return json.dumps({f: data[f] for f in FIELDS}, ensure_ascii=False)

    def matches(self, *, serialized_data, snapshot_data) -> bool:
        current, baseline = json.loads(serialized_data), json.loads(snapshot_data)
        if self.exact:
            return current == baseline
        return not compare("", baseline, current, self.tolerance).regressed

    def diff_lines(self, serialized_data, snapshot_data):
        if not snapshot_data:
            return iter(())
        return iter(compare("", json.loads(snapshot_data), json.loads(serialized_data), self.tolerance).table())

    # storage
    def read_snapshot_collection(self, *, snapshot_location: str) -> SnapshotCollection:
        collection = SnapshotCollection(location=snapshot_location)
        for key, record in read_set_file(Path(snapshot_location)).items():
            collection.add(Snapshot(name=f"{TEST_NAME}[{key}]", data=self.serialize(record)))
        return collection

    def read_snapshot_data_from_location(self, *, snapshot_location: str, snapshot_name: str, session_id: str):
        match = NAME.match(snapshot_name)
        record = read_set_file(Path(snapshot_location)).get(match["key"]) if match else None
        return None if record is None else self.serialize(record)

    @classmethod
    def write_snapshot_collection(cls, *, snapshot_collection: SnapshotCollection, name_order=None) -> None:
        changes = {}
        for snapshot in snapshot_collection:
            match = NAME.match(snapshot.name)
            if match and snapshot.data is not None:
                changes[match["key"]] = json.loads(snapshot.data)
        update_set_file(Path(snapshot_collection.location), changes, cls.recorded_with)

    def delete_snapshots(self, *, snapshot_location: str, snapshot_names: set[str]) -> None:
        keys = {m["key"] for m in map(NAME.match, snapshot_names) if m}
        update_set_file(Path(snapshot_location), dict.fromkeys(keys), self.recorded_with)


def unused_keys(path: Path, selected: Iterable[str]) -> list[str]:
    """Baseline items in ``path`` that the run's options no longer select (dataset, limit)."""
    chosen = set(selected)
    return sorted((key for key in read_set_file(path) if key not in chosen), key=_natural)
