"""Loading items from real files: errors name file, line, field and fix; subsets are stable."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from illusion.data import Item, load_items, read_jsonl, select_subset
from illusion.errors import DataError
from tiny import item, write_items

GOOD = item("q1", "en", "What is the capital of France?", "Paris", ["Lyon", "Marseille", "Nice"])


def write_lines(path, rows) -> None:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r, ensure_ascii=False)) + "\n" for r in rows))


def test_loads_items_in_language_then_id_order(tmp_path):
    rows = [item(f"q{i}", lang, f"Question {i} in {lang}?", f"Gold{i}", ["Alpha", "Beta", "Gamma"])
            for lang in ("fr", "en") for i in (2, 1)]
    write_items(tmp_path, rows)
    items = load_items(tmp_path, langs=["fr", "en"])
    assert [i.key for i in items] == ["fr-q1", "fr-q2", "en-q1", "en-q2"]
    assert items[0].origin.endswith("fr.jsonl:2")


@pytest.mark.parametrize("row, message", [
    ({**GOOD, "distractors": ["Lyon", "Nice"]}, "field 'distractors' has 2 entries; an item needs at least 3"),
    ({**GOOD, "question": ""}, "field 'question' must be a non-empty string"),
    ({**GOOD, "lang": "fr"}, "field 'lang' is 'fr' but the file is for 'en'"),
    ({**GOOD, "type": "colour"}, "field 'type' is 'colour'; use one of"),
    ({**GOOD, "distractors": ["Lyon", "Paris", "Nice"]}, "entry 'Paris' matches the gold form 'Paris'"),
    ({**GOOD, "distractors": ["Lyon", "lyon", "Nice"]}, "repeats 'lyon'"),
    ({**GOOD, "aliases": "Paname"}, "field 'aliases' must be a list of non-empty strings"),
    ({k: v for k, v in GOOD.items() if k != "id"}, "field 'id' is missing"),
    ("{not json", "invalid JSON"),
    ({**GOOD, "answer": "x" * 400}, "field 'answer' is 400 characters; keep it under 300"),
    ({**GOOD, "distractors": ["Lyon", " ", "Nice"]}, "field 'distractors' must be a list of non-empty strings"),
    ({**GOOD, "id": "q\x1b[31m1"}, "field 'id' 'q\\x1b[31m1' contains a control"),
    ({**GOOD, "id": "q\u202e1"}, "field 'id' 'q\\u202e1' contains a control"),
])
def test_bad_rows_name_file_line_field_and_fix(tmp_path, row, message):
    write_lines(tmp_path / "en.jsonl", [GOOD | {"id": "q0"}, row])
    with pytest.raises(DataError) as info:
        load_items(tmp_path)
    assert f"en.jsonl:2: " in str(info.value) and message in str(info.value)


def test_every_bad_row_is_listed_not_just_the_first(tmp_path):
    write_lines(tmp_path / "en.jsonl", [GOOD, GOOD, {**GOOD, "id": "q3", "answer": ""}])
    with pytest.raises(DataError) as info:
        read_jsonl(tmp_path / "en.jsonl", "en")
    text = str(info.value)
    assert "2 problem(s)" in text and "en.jsonl:2: field 'id' 'q1' repeats" in text and "en.jsonl:3:" in text


def test_missing_language_and_bad_paths_are_clear(tmp_path):
    write_items(tmp_path, [GOOD])
    with pytest.raises(DataError, match="asks for sw but .* has only en"):
        load_items(tmp_path, langs=["sw"])
    with pytest.raises(DataError, match="nope.: no such file; accepted forms: a directory of <lang>.jsonl files"):
        load_items(tmp_path / "nope")


def test_problems_of_every_language_file_are_listed_at_once(tmp_path):
    write_lines(tmp_path / "en.jsonl", [{**GOOD, "question": ""}])
    write_lines(tmp_path / "fr.jsonl", [{**GOOD, "lang": "fr", "answer": ""}])
    (tmp_path / "de.jsonl").write_text("\n")
    with pytest.raises(DataError) as info:
        load_items(tmp_path)
    text = str(info.value)
    assert text.startswith("3 problem(s)")
    assert "en.jsonl:1: field 'question'" in text and "fr.jsonl:1: field 'answer'" in text
    assert f"{tmp_path / 'de.jsonl'}: no items" in text


def test_unaligned_ids_are_noted_per_language_among_the_chosen_languages(tmp_path):
    rows = [{**GOOD, "id": f"q{n}", "lang": lang} for lang in ("en", "de") for n in (1, 2, 3)]
    write_lines(tmp_path / "en.jsonl", rows[:3])
    write_lines(tmp_path / "de.jsonl", rows[3:])
    write_lines(tmp_path / "fr.jsonl", [{**GOOD, "lang": "fr"}])
    notes: list[str] = []
    items = load_items(tmp_path, note=notes.append)
    assert len(items) == 7  # the suite still runs every item
    assert notes == [f"{tmp_path / 'fr.jsonl'}: 2 of 3 ids missing for 'fr' (q2, q3); "
                     "every language must hold the same ids"]
    notes.clear()
    assert len(load_items(tmp_path, langs=["en", "de"], note=notes.append)) == 6 and notes == []


def make(ids, lang):
    return [Item(id=i, lang=lang, question="q?", answer="a", aliases=(), distractors=("b", "c", "d"), type="entity")
            for i in ids]


@given(st.sets(st.from_regex(r"q[0-9]{1,3}", fullmatch=True), min_size=1, max_size=40),
       st.integers(1, 50), st.integers(0, 2**16))
def test_subset_picks_the_same_ids_in_every_language(ids, limit, seed):
    items = make(sorted(ids), "en") + make(sorted(ids, reverse=True), "fr")
    chosen = select_subset(items, limit, seed)
    en = [i.id for i in chosen if i.lang == "en"]
    assert en == [i.id for i in chosen if i.lang == "fr"]
    assert len(en) == min(limit, len(ids))
    again = select_subset(list(reversed(items)), limit, seed)  # file order must not matter
    assert {i.key for i in again} == {i.key for i in chosen}


def test_shipped_starter_set_is_aligned_and_valid():
    items = load_items(langs=["en", "de", "fr", "es", "zh", "ru"])
    by_lang: dict[str, list[str]] = {}
    for it in items:
        by_lang.setdefault(it.lang, []).append(it.id)
    assert all(len(ids) >= 40 for ids in by_lang.values())
    assert len({tuple(ids) for ids in by_lang.values()}) == 1


def test_the_suite_prints_the_unaligned_ids_as_a_progress_line(pytester, tiny_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("ILLUSION_CACHE", str(tmp_path / "cache"))
    (tmp_path / "qa").mkdir()
    write_lines(tmp_path / "qa" / "en.jsonl", [GOOD, {**GOOD, "id": "q2"}])
    write_lines(tmp_path / "qa" / "fr.jsonl", [{**GOOD, "lang": "fr"}])
    suite = Path(__file__).resolve().parent.parent / "illusion_tests" / "test_consistency.py"
    pytester.makeini("[pytest]\n")
    pytester.mkpydir("illusion_tests")
    pytester.path.joinpath("illusion_tests", "test_consistency.py").write_text(suite.read_text())
    result = pytester.runpytest_subprocess("illusion_tests", "--collect-only", "-q", "--illusion-model", str(tiny_dir),
                                           "--illusion-dataset", str(tmp_path / "qa"))
    assert result.ret == 0, result.stdout.str() + result.stderr.str()
    notes: list[str] = []
    load_items(tmp_path / "qa", note=notes.append)
    assert notes and f"[illusion] {notes[0]}" in result.stderr.str()
