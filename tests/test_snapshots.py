"""Gold-rank snapshots: the comparison rule (Hypothesis), the file format, and the suite via pytester."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from illusion.snapshots import (FIELDS, SnapshotFileError, allowed_rank, category_direction, compare, read_set_file,
                                rank_direction, render_set_file, set_name, update_set_file)
from illusion.verdict import CATEGORIES, category
from tiny import WORDS, item, write_items

SUITE = Path(__file__).resolve().parent.parent / "illusion_tests" / "test_gold_rank.py"
ranks = st.integers(min_value=1, max_value=200_000)
tolerances = st.integers(min_value=0, max_value=50)
cats = st.sampled_from(CATEGORIES)


def record(cat: str = "both", rank: int = 1, logprob: float = -1.0, margin: float = 1.0) -> dict:
    mc, gen = cat in ("both", "recognition_only"), cat in ("both", "generation_only")
    assert category(mc, gen) == cat
    return {"category": cat, "mc_correct": mc, "gen_correct": gen, "gold_rank": rank,
            "gold_logprob": logprob, "mc_margin": margin}


# --- the rule ------------------------------------------------------------------------------------

@pytest.mark.parametrize("baseline, tolerance, last_passing", [
    (1, 0, 1), (7, 0, 7),  # tolerance 0: no worsening at all
    (1, 1, 2), (10, 1, 11), (50, 1, 55), (1000, 1, 1100),  # K positions or K x 10%, whichever is larger
    (1, 3, 4), (20, 3, 26), (1000, 3, 1300),
])
def test_tolerance_edges(baseline, tolerance, last_passing):
    assert allowed_rank(baseline, tolerance) == last_passing
    assert rank_direction(baseline, last_passing, tolerance) != "worse"
    assert rank_direction(baseline, last_passing + 1, tolerance) == "worse"


@given(ranks, tolerances)
def test_allowed_rank_grows_with_the_baseline_and_the_tolerance(rank, tolerance):
    allowed = allowed_rank(rank, tolerance)
    assert allowed >= rank + tolerance  # small ranks: K positions
    assert allowed >= rank + rank * tolerance // 10  # large ranks: K x 10%
    assert allowed_rank(rank + 1, tolerance) >= allowed and allowed_rank(rank, tolerance + 1) > allowed


@given(ranks, ranks, tolerances)
def test_rank_direction_is_antisymmetric_and_unchanged_rank_is_same(old, new, tolerance):
    assert rank_direction(old, old, tolerance) == "same"
    forward, backward = rank_direction(old, new, tolerance), rank_direction(new, old, tolerance)
    assert (forward == "worse") == (backward == "better")
    if new < old:
        assert forward != "worse"


@given(cats, cats)
def test_category_direction_matches_the_issue_and_mirrors(old, new):
    direction = category_direction(old, new)
    if old == new:
        assert direction == "same"
    if old == "both" and new != "both":
        assert direction == "worse"
    if (old, new) == ("recognition_only", "neither"):
        assert direction == "worse"
    if old == "neither":
        assert direction != "worse"  # nothing left to lose
    assert (direction == "worse") == (category_direction(new, old) == "better")


@given(cats, cats, ranks, ranks, tolerances)
def test_a_comparison_regresses_or_improves_never_both(old_cat, new_cat, old_rank, new_rank, tolerance):
    result = compare("en-q1", record(old_cat, old_rank), record(new_cat, new_rank), tolerance)
    assert result.regressed == ("worse" in (result.category, result.rank))
    assert not (result.regressed and result.improved)
    if old_cat == new_cat and old_rank == new_rank:
        assert not result.regressed and not result.improved


def test_only_rank_and_category_decide_and_the_table_shows_every_field():
    drift = compare("en-q1", record(logprob=-1.0, margin=2.0), record(logprob=-9.0, margin=-3.0), 0)
    assert not drift.regressed and not drift.improved
    worse = compare("en-q1", record("both", 1), record("recognition_only", 7), 0)
    table = "\n".join(worse.table())
    assert worse.regressed and all(name in table for name in FIELDS)
    assert re.search(r"gold_rank\s+1\s+7\s+WORSE \(allowed up to 1", table)
    assert re.search(r"category\s+both\s+recognition_only\s+WORSE", table)


# --- the file --------------------------------------------------------------------------------------

@given(st.dictionaries(st.from_regex(r"[a-z]{2}-q[0-9]{1,4}", fullmatch=True),
                       st.builds(record, cats, ranks, st.floats(-80, 0).map(lambda x: round(x, 2)),
                                 st.floats(-40, 40).map(lambda x: round(x, 2))), max_size=12))
def test_file_round_trips_one_item_per_line(tmp_path_factory, items):
    path = tmp_path_factory.mktemp("snap") / "en.json"
    path.write_text(render_set_file(items, {"model": "m"}))
    assert read_set_file(path) == items
    item_lines = [line for line in path.read_text().splitlines() if line.startswith('  "')]
    assert len(item_lines) == len(items)  # a changed item is a one-line diff


@pytest.mark.parametrize("text, problem", [
    ('{"format": "benchmark-illusion gold-rank snapshot v1", "items": {"en-q1": ', "not valid JSON at line 1"),
    ('<<<<<<< HEAD\n{}\n', "not valid JSON at line 1"),
    ('{"items": {}}', '"format": "benchmark-illusion gold-rank snapshot v1"'),
    ('{"format": "benchmark-illusion gold-rank snapshot v1", "items": {"en-q1": {"category": "both"}}}',
     "item 'en-q1' field 'mc_correct' is None"),
    ('{"format": "benchmark-illusion gold-rank snapshot v1", "items": {"en-q1": '
     '{"category": "both", "mc_correct": false, "gen_correct": true, "gold_rank": 1, "gold_logprob": 0, "mc_margin": 0}}}',
     "contradicts"),
])
def test_a_corrupted_file_names_the_file_and_the_problem(tmp_path, text, problem):
    path = tmp_path / "en.json"
    path.write_text(text)
    with pytest.raises(SnapshotFileError) as caught:
        read_set_file(path)
    assert str(path) in str(caught.value) and problem in str(caught.value)
    assert "git checkout" in str(caught.value)


def test_update_merges_removes_and_never_overwrites_a_corrupted_file(tmp_path, monkeypatch):
    monkeypatch.setenv("ILLUSION_CACHE", str(tmp_path / "cache"))
    path = tmp_path / "en.json"
    update_set_file(path, {"en-q2": record(rank=2), "en-q10": record(rank=10)}, {})
    update_set_file(path, {"en-q1": record(rank=1), "en-q10": None}, {})
    assert list(read_set_file(path)) == ["en-q1", "en-q2"]  # natural order, q10 removed
    path.write_text("garbage")
    with pytest.raises(SnapshotFileError):
        update_set_file(path, {"en-q3": record()}, {})
    assert path.read_text() == "garbage"


def test_set_names_separate_configurations():
    one = set_name(model_label="smollm2-135m", recipe_label="wanda-0.5", dataset=None, dtype="float32",
                   prompt_format="auto")
    assert one == "smollm2-135m/wanda-0.5/fixtures-qa-float32-auto"
    assert set_name(model_label="m", recipe_label=None, dataset="/data/my qa/", dtype="bfloat16",
                    prompt_format="chat") == "m/no-prune/my-qa-bfloat16-chat"


@pytest.mark.parametrize("dataset, slug", [
    ("mkqa:/home/me/data/mkqa.jsonl.gz", "mkqa-mkqa.jsonl.gz"),  # an ini path made absolute: no machine in the name
    ("mkqa:data/mkqa.jsonl.gz", "mkqa-mkqa.jsonl.gz"),
    ("mkqa:apple/mkqa", "mkqa-mkqa"),
    ("hf:org/my-qa:test", "hf-org-my-qa-test"),
    ("qa.jsonl", "qa.jsonl"),
])
def test_set_names_do_not_depend_on_where_the_dataset_lies(dataset, slug):
    name = set_name(model_label="m", recipe_label=None, dataset=dataset, dtype="float32", prompt_format="auto")
    assert name == f"m/no-prune/{slug}-float32-auto"


# --- the suite through pytester ---------------------------------------------------------------------

@pytest.fixture
def rank_suite(pytester, tiny_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("ILLUSION_CACHE", str(tmp_path / "cache"))
    q = {"en": "What is the name of the old river?", "fr": "Quel est le nom de la vieille ville ?"}
    rows = [item(f"q{i}", lang, q[lang], WORDS[i], WORDS[i + 5:i + 8]) for lang in q for i in range(1, 4)]
    data = write_items(tmp_path / "qa", rows)
    pytester.makeini("[pytest]\n")
    pytester.mkpydir("illusion_tests")
    pytester.path.joinpath("illusion_tests", "test_gold_rank.py").write_text(SUITE.read_text())
    base = ["--illusion-model", str(tiny_dir), "--illusion-dataset", str(data), "--illusion-dtype", "float32",
            "-p", "no:cacheprovider", "--illusion-snapshot-name", "pr"]

    def run(*args: str, subprocess: bool = False):
        runner = pytester.runpytest_subprocess if subprocess else pytester.runpytest
        return runner("illusion_tests", *base, *args)

    run.dir = pytester.path / "snapshots" / "pr"
    return run


def edit(path: Path, key: str, **changes) -> dict:
    document = json.loads(path.read_text())
    document["items"][key].update(changes)
    path.write_text(json.dumps(document))
    return document["items"][key]


def test_record_then_rerun_matches(rank_suite):
    rank_suite("--snapshot-update").assert_outcomes(passed=6)
    assert sorted(p.name for p in rank_suite.dir.iterdir()) == ["en.json", "fr.json"]
    assert list(read_set_file(rank_suite.dir / "en.json")) == ["en-q1", "en-q2", "en-q3"]
    again = rank_suite()
    again.assert_outcomes(passed=6)
    assert "6 matched" in again.stdout.str()
    # Recomputed one question per batch, without the results store: re-recording changes no byte.
    before = {p.name: p.read_bytes() for p in rank_suite.dir.iterdir()}
    rank_suite("--illusion-batch-size", "1", "--illusion-no-cache", "--snapshot-update").assert_outcomes(passed=6)
    assert {p.name: p.read_bytes() for p in rank_suite.dir.iterdir()} == before


def test_a_missing_baseline_fails_with_the_command_that_records_it(rank_suite):
    result = rank_suite()
    result.assert_outcomes(failed=6)
    out = result.stdout.str()
    assert "[en-q1] no gold-rank baseline in snapshots/pr/en.json" in out
    command = re.search(r"^\s+(pytest illusion_tests .*--snapshot-update-new-only)$", out, re.M).group(1)
    assert "--illusion-snapshot-name pr" in command
    rank_suite("--snapshot-update-new-only").assert_outcomes(passed=6)
    rank_suite().assert_outcomes(passed=6)


def test_regression_fails_with_a_field_by_field_diff_and_update_records_it(rank_suite):
    rank_suite("--snapshot-update").assert_outcomes(passed=6)
    en = rank_suite.dir / "en.json"
    # An item today's model does not generate at rank 1; pretend its baseline did.
    key, actual = next((k, r) for k, r in read_set_file(en).items() if (r["category"], r["gold_rank"]) != ("both", 1))
    edit(en, key, category="both", mc_correct=True, gen_correct=True, gold_rank=1)
    result = rank_suite("-k", key)
    result.assert_outcomes(failed=1)
    out = result.stdout.str()
    assert f"[{key}] gold rank regressed against the baseline in snapshots/pr/en.json" in out
    assert re.search(r"field\s+baseline\s+current", out) and re.search(r"category\s+both\s+\w+\s+WORSE", out)
    assert "--snapshot-update" in out
    rank_suite("-k", key, "--snapshot-update").assert_outcomes(passed=1)
    assert read_set_file(en)[key] == actual
    rank_suite().assert_outcomes(passed=6)


def test_improvement_passes_is_listed_and_recorded_by_update(rank_suite):
    rank_suite("--snapshot-update").assert_outcomes(passed=6)
    fr = rank_suite.dir / "fr.json"
    actual = read_set_file(fr)["fr-q1"]
    edit(fr, "fr-q1", gold_rank=actual["gold_rank"] + 500)
    result = rank_suite()
    result.assert_outcomes(passed=6)
    out = result.stdout.str()
    assert "1 improved over the baseline (they pass)" in out
    assert f"fr-q1: gold rank {actual['gold_rank'] + 500} -> {actual['gold_rank']}" in out
    assert read_set_file(fr)["fr-q1"]["gold_rank"] == actual["gold_rank"] + 500  # tolerant match writes nothing
    rank_suite("--snapshot-update").assert_outcomes(passed=6)
    assert read_set_file(fr)["fr-q1"] == actual


def test_rank_tolerance_absorbs_a_small_worsening(rank_suite):
    rank_suite("--snapshot-update").assert_outcomes(passed=6)
    en = rank_suite.dir / "en.json"
    key, actual = next((k, r) for k, r in read_set_file(en).items() if 3 <= r["gold_rank"] <= 20)
    edit(en, key, gold_rank=actual["gold_rank"] - 2)  # today is 2 positions worse than the baseline
    rank_suite("-k", key).assert_outcomes(failed=1)
    rank_suite("-k", key, "--illusion-rank-tolerance", "1").assert_outcomes(failed=1)
    rank_suite("-k", key, "--illusion-rank-tolerance", "2").assert_outcomes(passed=1)


def test_unused_baselines_are_reported_and_removed_by_update(rank_suite):
    rank_suite("--snapshot-update").assert_outcomes(passed=6)
    en, fr = rank_suite.dir / "en.json", rank_suite.dir / "fr.json"
    document = json.loads(en.read_text())
    document["items"]["en-q99"] = document["items"]["en-q1"]
    en.write_text(json.dumps(document))
    result = rank_suite("-k", "en-q1")  # -k filters tests, not the selection: only q99 is unused
    out = result.stdout.str()
    assert "1 baselines in snapshots/pr/en.json unused" in out and "en-q99" in out
    fr_before = fr.read_text()
    rank_suite("--illusion-langs", "fr", "--snapshot-update").assert_outcomes(passed=3)
    assert "en-q99" in read_set_file(en) and fr.read_text() == fr_before  # other languages untouched
    rank_suite("--snapshot-update").assert_outcomes(passed=6)
    assert list(read_set_file(en)) == ["en-q1", "en-q2", "en-q3"]


def test_a_corrupted_snapshot_file_fails_its_items_and_is_not_overwritten(rank_suite):
    rank_suite("--snapshot-update").assert_outcomes(passed=6)
    en = rank_suite.dir / "en.json"
    en.write_text('{"format": "benchmark-illusion gold-rank snapshot v1", "items": {')
    for args in ((), ("--snapshot-update",)):
        result = rank_suite(*args)
        result.assert_outcomes(failed=3, passed=3)
        out = result.stdout.str()
        # Counted in the failure sections: pytest repeats each message in the short summary when $CI is set.
        failures = out.split("short test summary info")[0]
        assert failures.count(f"snapshot file {en} is unreadable: not valid JSON at line 1") == 3  # once per test
        assert "Traceback" not in out and "During handling" not in out
    assert en.read_text().endswith('"items": {')


def test_bad_snapshot_name_is_a_usage_error(rank_suite):
    result = rank_suite("--illusion-snapshot-name", "../outside")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "--illusion-snapshot-name '../outside'" in result.stderr.str()


def test_xdist_records_every_item_and_matches_serial_outcomes(rank_suite):
    rank_suite("-n", "2", "--snapshot-update", subprocess=True).assert_outcomes(passed=6)
    assert len(read_set_file(rank_suite.dir / "en.json")) == 3 and len(read_set_file(rank_suite.dir / "fr.json")) == 3
    edit(rank_suite.dir / "fr.json", "fr-q3", gold_rank=10**6)  # one improvement
    serial = rank_suite("-rA", subprocess=True)
    parallel = rank_suite("-rA", "-n", "2", subprocess=True)
    assert serial.parseoutcomes() == parallel.parseoutcomes() == {"passed": 6}
    assert "1 improved over the baseline" in serial.stdout.str() and "1 improved over the baseline" in parallel.stdout.str()


def test_a_regression_message_shows_dataset_text_escaped(rank_suite, tmp_path):
    hostile = "What is the name of the old river?\x1b[2J\x1b]0;TITLE\x07\u202e"
    rows = [item(f"q{i}", "en", hostile, WORDS[i], WORDS[i + 5:i + 8], aliases=["\u2066x"]) for i in range(1, 4)]
    data = str(write_items(tmp_path / "hostile", rows))
    rank_suite("--illusion-dataset", data, "--snapshot-update").assert_outcomes(passed=3)
    en = rank_suite.dir / "en.json"
    key = next(k for k, r in read_set_file(en).items() if (r["category"], r["gold_rank"]) != ("both", 1))
    edit(en, key, category="both", mc_correct=True, gen_correct=True, gold_rank=1)
    result = rank_suite("--illusion-dataset", data, "-k", key)
    result.assert_outcomes(failed=1)
    text = result.stdout.str() + result.stderr.str()
    assert not re.search("[\x00-\x09\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]", text)
    assert "question: What is the name of the old river?\\x1b[2J\\x1b]0;TITLE\\x07\\u202e" in text


def test_summary_lines_count_list_and_give_the_commands_that_act():
    from types import SimpleNamespace

    from illusion.snapshots import UnusedBaselines, summary_lines

    config = SimpleNamespace(invocation_params=SimpleNamespace(args=("illusion_tests", "--snapshot-update", "-k", "a b")))
    notes = [{"key": f"en-q{i}", "path": "snapshots/pr/en.json", "status": "improved", "summary": f"gold rank 9 -> {i}"}
             for i in range(25)] + [{"key": "en-x", "path": "snapshots/pr/en.json", "status": "missing", "summary": ""}]
    unused = [UnusedBaselines(path="snapshots/pr/en.json", keys=[f"en-u{i}" for i in range(12)], removed=False),
              UnusedBaselines(path="snapshots/pr/fr.json", keys=["fr-u"], removed=True)]
    lines = summary_lines(notes, unused, config)
    assert lines[0] == "gold-rank baselines (snapshots/pr/): 25 improved, 1 missing"
    assert lines[1] == "  25 improved over the baseline (they pass):"
    assert lines[2:22] == [f"    {n['key']}: {n['summary']}" for n in sorted(notes[:25], key=lambda n: n["key"])][:20]
    assert lines[22:24] == ["    ... and 5 more", "  record them with: pytest illusion_tests -k 'a b' --snapshot-update"]
    assert lines[24] == ("  1 items have no baseline; record them with: "
                         "pytest illusion_tests -k 'a b' --snapshot-update-new-only")
    assert lines[25].startswith("  12 baselines in snapshots/pr/en.json unused (not selected by this run's dataset")
    assert lines[25].endswith("en-u8, en-u9, ... and 2 more")
    assert lines[26] == "  1 baselines in snapshots/pr/fr.json removed: fr-u"
    assert summary_lines([], unused, config) == []
