"""Gold-rank snapshots: a committed per-item baseline that fails the build on demotion.

Each ``test_gold_rank[<lang>-<id>]`` compares the candidate's rank record of an item with the
baseline in ``snapshots/<set>/<lang>.json``, one file per language, one item per line (so a pull
request diff shows exactly which items moved). The comparison is tolerant (see ``compare``):
small numeric drifts pass, a worse category or a gold rank beyond the tolerance fails, and an
improvement passes and is listed. ``--snapshot-update`` records the current values exactly.

Storage goes through syrupy (``GoldRankExtension``), which queues writes and flushes them at the
end of each process; the flush merges into the file under a lock, so xdist workers writing the
same language file never lose each other's items.

The workflow around it (``GoldRankBaseline``) fails a test with a message that says what moved
and the exact command that records it, notes each item's outcome for the end-of-run summary
(``summary_lines``), and finds baselines the run's options no longer select (``unused_baselines``).
"""

from __future__ import annotations

import hashlib
import json
import re
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Literal, Sequence

import pytest
from syrupy.data import Snapshot, SnapshotCollection, SnapshotCollections
from syrupy.extensions.base import AbstractSyrupyExtension

from .errors import IllusionError
from .files import write_atomic
from .paths import cache_root
from .results import ItemResult
from .terminal import safe_text
from .verdict import Category, ItemVerdict, category

FORMAT = "benchmark-illusion gold-rank snapshot v1"
TEST_NAME = "test_gold_rank"
FIELDS = ("category", "mc_correct", "gen_correct", "gold_rank", "gold_logprob", "mc_margin")
DIGITS = 2  # gold_logprob and mc_margin are informative: rounded so PR diffs stay quiet
RANK_TOLERANCE_PERCENT = 10  # each tolerance step allows 10% of the baseline rank (see allowed_rank)
NAME = re.compile(r"^test_gold_rank\[(?P<key>[^\]]+)\]$")
Direction = Literal["worse", "better", "same"]
Status = Literal["missing", "recorded", "unchanged", "regressed", "improved", "matched"]
NOTE_PROPERTY = "illusion_snapshot"  # a test report's user property: the item's outcome against its baseline
UPDATE_OPTIONS = ("--snapshot-update", "--snapshot-update-new-only")  # syrupy's, dropped from rerun commands
SUMMARY_LISTED = 20  # improved items listed by name at the end of a run
UNUSED_LISTED = 10  # unused baseline keys listed by name, per file


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
        follow, and would delete baselines of languages a run did not select. The run reports
        unused baselines itself (``unused_baselines``)."""
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


# --- the baseline workflow: what a test checks, says, and leaves for the summary ---------------

class GoldRankBaseline:
    """The candidate's rank record of one item against its committed baseline."""

    def __init__(self, *, assertion, root: Path, node: pytest.Item, updating: bool, recording_new: bool):
        self.assertion, self.root, self.node = assertion, root, node
        self.updating, self.recording_new = updating, recording_new

    @classmethod
    def for_test(cls, *, snapshot, node: pytest.Item, set_name: str, recorded_with: dict[str, Any],
                 tolerance: int) -> GoldRankBaseline:
        """syrupy's ``snapshot`` fixture, stored in the set ``snapshots/<set_name>`` of the rootdir."""
        options = node.config.option
        root = node.config.rootpath / "snapshots" / set_name
        updating = bool(options.update_snapshots)
        extension = GoldRankExtension.configured(root=root, tolerance=tolerance, exact=updating,
                                                 recorded_with=recorded_with)
        return cls(assertion=snapshot.use_extension(extension), root=root, node=node, updating=updating,
                   recording_new=bool(options.update_new_snapshots_only))

    def check(self, verdict: ItemVerdict, item) -> None:
        path = self.root / f"{item.lang}.json"
        shown = relative_path(path, self.node.config.rootpath)
        try:
            baseline = read_set_file(path).get(item.key)
        except SnapshotFileError as exc:  # never overwritten, not even by --snapshot-update
            # not pytest.fail here: it would chain the two ("During handling ...") and say it twice
            raise pytest.fail.Exception(safe_text(exc, lines=True), pytrace=False) from None
        record = rank_record(verdict.candidate)
        if baseline is None and not (self.updating or self.recording_new):
            self._note(item, shown, "missing")
            pytest.fail(safe_text(f"[{item.key}] no gold-rank baseline in {shown}. Record the missing baselines "
                                  f"with:\n  {rerun_command(self.node.config, '--snapshot-update-new-only')}",
                                  lines=True), pytrace=False)
        matched = self.assertion == record  # syrupy's bookkeeping; writes when updating
        if self.updating or baseline is None:
            self._note(item, shown, "recorded" if baseline != record else "unchanged")
            assert matched, f"syrupy did not record {item.key}"
            return
        comparison = compare(item.key, baseline, record, self.assertion.extension.tolerance)
        if comparison.regressed:
            self._note(item, shown, "regressed", comparison.summary())
            pytest.fail(regression_message(comparison, item, verdict, shown, self.node.config), pytrace=False)
        assert matched, f"syrupy and the tolerance rule disagree on {item.key}"
        self._note(item, shown, "improved" if comparison.improved else "matched", comparison.summary())

    def _note(self, item, path: str, status: Status, summary: str = "") -> None:
        """The item's outcome, on the test's report: the summary reads it (from any xdist worker)."""
        self.node.user_properties.append((NOTE_PROPERTY, json.dumps(
            {"key": item.key, "lang": item.lang, "path": path, "status": status, "summary": summary},
            ensure_ascii=False)))


def check_gold_rank(verdict: ItemVerdict, item, baseline: GoldRankBaseline) -> None:
    """The candidate's gold rank and category must not be worse than the committed baseline."""
    baseline.check(verdict, item)


def relative_path(path: Path, root: Path) -> str:
    """``path`` as shown to the user: relative to the rootdir when inside it."""
    try:
        return str(path.relative_to(root))
    except ValueError:
        return str(path)


def rerun_command(config: pytest.Config, *extra: str) -> str:
    """This run's own command line plus ``extra``: what a user pastes to act on a message."""
    args = [a for a in config.invocation_params.args if a not in UPDATE_OPTIONS]
    return shlex.join(["pytest", *args, *extra])


def regression_message(comparison: Comparison, item, verdict: ItemVerdict, path: str, config: pytest.Config) -> str:
    """What moved, the item, old versus new field by field, and the command that records it."""
    lines = [f"[{safe_text(item.key)}] gold rank regressed against the baseline in {path}: {comparison.summary()}",
             f"  question: {safe_text(item.question)}", f"  gold:     {safe_text(item.answer)}",
             f"  greedy:   {verdict.candidate.generation!r}"]
    lines += ["  " + line for line in comparison.table()]
    lines.append(f"  if this change is intended, record it: {rerun_command(config, '--snapshot-update')}")
    return safe_text("\n".join(lines), lines=True)


@dataclass(frozen=True)
class UnusedBaselines:
    """Baselines in one set file that the run's options no longer select."""

    path: str  # as shown: relative to the rootdir
    keys: list[str]
    removed: bool  # by --snapshot-update (unless --snapshot-no-cleanup)


def unused_baselines(*, notes: Iterable[dict], selected: Sequence, rootpath: Path, remove: bool,
                     recorded_with: dict[str, Any]) -> list[UnusedBaselines]:
    """Baselines of the set files this run's tests used (``notes``) whose items the options no
    longer select (``selected``: every item the options select, before -k, so -k never makes a
    baseline unused). Only languages that ran are looked at; ``remove`` deletes them, as syrupy does."""
    by_lang: dict[str, list[str]] = {}
    for item in selected:
        by_lang.setdefault(item.lang, []).append(item.key)
    found = []
    for shown in sorted({note["path"] for note in notes}):
        path = rootpath / shown
        keys = unused_keys(path, by_lang.get(path.stem, []))
        if keys and remove:
            update_set_file(path, dict.fromkeys(keys), recorded_with)
        if keys:
            found.append(UnusedBaselines(path=shown, keys=keys, removed=remove))
    return found


def removes_unused(config: pytest.Config) -> bool:
    """``--snapshot-update`` removes unused baselines, as syrupy does, unless ``--snapshot-no-cleanup``."""
    return bool(config.option.update_snapshots) and not config.option.no_cleanup


def summary_lines(notes: Sequence[dict], unused: Sequence[UnusedBaselines], config: pytest.Config) -> list[str]:
    """The end-of-run lines: counts by outcome, improvements to record, missing and unused baselines,
    each with the command that acts on it. Unescaped: the caller prints them through ``safe_text``."""
    if not notes:
        return []
    by_status: dict[str, list[dict]] = {}
    for note in notes:
        by_status.setdefault(note["status"], []).append(note)
    counts = ", ".join(f"{len(v)} {k}" for k, v in sorted(by_status.items()))
    lines = [f"gold-rank baselines ({notes[0]['path'].rsplit('/', 1)[0]}/): {counts}"]
    improved = sorted(by_status.get("improved", []), key=lambda n: n["key"])
    if improved:
        lines.append(f"  {len(improved)} improved over the baseline (they pass):")
        lines += [f"    {note['key']}: {note['summary']}" for note in improved[:SUMMARY_LISTED]]
        if len(improved) > SUMMARY_LISTED:
            lines.append(f"    ... and {len(improved) - SUMMARY_LISTED} more")
        lines.append(f"  record them with: {rerun_command(config, '--snapshot-update')}")
    if by_status.get("missing"):
        lines.append(f"  {len(by_status['missing'])} items have no baseline; record them with: "
                     f"{rerun_command(config, '--snapshot-update-new-only')}")
    for found in unused:
        keys = found.keys
        listed = ", ".join(keys[:UNUSED_LISTED]) + (
            f", ... and {len(keys) - UNUSED_LISTED} more" if len(keys) > UNUSED_LISTED else "")
        verb = ("removed" if found.removed else
                "unused (not selected by this run's dataset options; --snapshot-update removes them)")
        lines.append(f"  {len(keys)} baselines in {found.path} {verb}: {listed}")
    return lines
