"""The item schema: bad rows name file, line, field and fix, every one of them; subsets are stable."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from illusion.data import Item, select_subset
from illusion.errors import DataError
from illusion.sources import load_items, read_jsonl
from tiny import item

GOOD = item("q1", "en", "What is the capital of France?", "Paris", ["Lyon", "Marseille", "Nice"])


def write_lines(path, rows) -> None:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r, ensure_ascii=False)) + "\n" for r in rows))


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
