"""Loaders for real datasets: item-schema files through ``datasets``, MKQA in both forms, hub specs,
and ``load_items`` over a directory of ``<lang>.jsonl`` files (the shipped fixtures' form).

Every file is written here, in tmp_path; nothing touches the network.
"""

from __future__ import annotations

import csv
import dataclasses
import gzip
import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from illusion import mkqa, sources
from illusion.data import Item
from illusion.errors import DataError
from illusion.matching import mentions
from illusion.sources import load_items, load_source, load_source_with_report
from tiny import item, write_items

ROWS = [
    {"id": "q1", "lang": "en", "question": "What is the capital of France?", "answer": "Paris",
     "aliases": ["Paname"], "distractors": ["Lyon", "Marseille", "Nice"], "type": "place"},
    {"id": "007", "lang": "en", "question": "How many legs does a spider have?", "answer": "8",
     "aliases": [], "distractors": ["6", "10", "4"], "type": "number", "source": "hand-written"},
    {"id": "q1", "lang": "fr", "question": "Quelle est la capitale de la France ?", "answer": "Paris",
     "aliases": [], "distractors": ["Lyon", "Marseille", "Nice"], "type": "place"},
]


def content(items: list[Item]) -> list[tuple]:
    """Items without their origin (which names the file)."""
    return [dataclasses.astuple(dataclasses.replace(item, origin="")) for item in items]


def write_jsonl(path, rows) -> str:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return str(path)


def write_csv(path, rows) -> str:
    columns = ["id", "lang", "question", "answer", "aliases", "distractors", "type", "source"]
    with path.open("w", newline="", encoding="utf-8-sig") as handle:  # with a BOM, as Excel saves it
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        for row in rows:
            writer.writerow({k: json.dumps(v, ensure_ascii=False) if isinstance(v, list) else v
                             for k, v in row.items()})
    return str(path)


def write_parquet(path, rows) -> str:
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.Table.from_pylist([{"source": None, **r} for r in rows]), path)
    return str(path)


# --- item-schema files ---------------------------------------------------------------------------

def test_jsonl_csv_and_parquet_load_to_the_same_items(tmp_path):
    loaded = {kind: load_source(write(tmp_path / f"items.{kind}", ROWS), langs=None)
              for kind, write in (("jsonl", write_jsonl), ("csv", write_csv), ("parquet", write_parquet))}
    assert content(loaded["jsonl"]) == content(loaded["csv"]) == content(loaded["parquet"])
    items = loaded["csv"]
    assert [i.key for i in items] == ["en-007", "en-q1", "fr-q1"]  # language, then id; "007" stays text
    assert items[1].aliases == ("Paname",) and items[0].source == "hand-written" and items[1].source is None
    assert items[0].origin == f"{tmp_path / 'items.csv'}:3"  # CSV row 3: header is row 1
    assert loaded["parquet"][0].origin == f"{tmp_path / 'items.parquet'}:2"


def test_langs_filter_and_order(tmp_path):
    spec = write_jsonl(tmp_path / "items.jsonl", ROWS)
    assert [i.key for i in load_source(spec, langs=["fr", "en"])] == ["fr-q1", "en-007", "en-q1"]
    with pytest.raises(DataError, match=r"no items for de \(it has en, fr\)"):
        load_source(spec, langs=["en", "de"])


def test_jsonl_origin_is_the_line_even_after_blank_lines(tmp_path):
    path = tmp_path / "items.jsonl"
    path.write_text("\n" + json.dumps(ROWS[0]) + "\n\n" + json.dumps({**ROWS[1], "question": ""}) + "\n")
    with pytest.raises(DataError, match=r"items\.jsonl:4: field 'question' must be a non-empty string"):
        load_source(str(path), langs=None)


def test_bad_csv_rows_name_file_row_and_field(tmp_path):
    rows = [ROWS[0], {k: v for k, v in ROWS[1].items() if k != "question"}, {**ROWS[2], "distractors": "Lyon"}]
    spec = write_csv(tmp_path / "bad.csv", rows)
    with pytest.raises(DataError) as err:
        load_source(spec, langs=None)
    message = str(err.value)
    assert message.startswith("2 problem(s)")  # every bad row, not just the first
    assert f"{spec}:3: field 'question' must be a non-empty string" in message
    # a CSV cell holds a list as JSON: the problem names the column, the JSON error and the fix
    assert f"{spec}:4: column 'distractors' is not a JSON list (Expecting value at character 1 of 'Lyon')" in message
    assert 'write the cell as a JSON list of strings, e.g. ["Lyon", "Nice", "Brest"]' in message


def test_jsonl_that_arrow_cannot_type_still_names_the_line(tmp_path):
    path = tmp_path / "mixed.jsonl"
    lines = [json.dumps(ROWS[0]), json.dumps({**ROWS[1], "aliases": "eight"}), "{not json"]
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError) as err:
        load_source(str(path), langs=None)
    assert f"{path}:2: field 'aliases' must be a list of non-empty strings" in str(err.value)
    assert f"{path}:3: invalid JSON" in str(err.value)


def test_repeated_id_in_one_language_is_an_error(tmp_path):
    spec = write_jsonl(tmp_path / "items.jsonl", [*ROWS, ROWS[0]])
    with pytest.raises(DataError, match=r"items\.jsonl:4: field 'id' 'q1' repeats .*items\.jsonl:1 for language 'en'"):
        load_source(spec, langs=None)


@pytest.mark.parametrize("spec", ["nope.jsonl", "data.txt", "mkqa:nope/mkqa.jsonl.gz", "mkqa:./missing"])
def test_unknown_or_missing_spec_names_the_spec_and_the_forms(tmp_path, monkeypatch, spec):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data.txt").write_text("hello")
    with pytest.raises(DataError) as err:
        load_source(spec, langs=None)
    assert repr(spec) in str(err.value)
    assert "mkqa:PATH_OR_ID" in str(err.value) and "hf:ID[:SPLIT]" in str(err.value)


def test_hf_spec_loads_the_split_through_datasets(tmp_path):
    # datasets.load_dataset(ID) also accepts a local dataset directory: the same call, offline.
    (tmp_path / "hub").mkdir()
    write_jsonl(tmp_path / "hub" / "test.jsonl", [ROWS[0], {k: v for k, v in ROWS[1].items() if k != "aliases"}])
    items = load_source(f"hf:{tmp_path / 'hub'}:test", langs=["en"])
    assert [i.key for i in items] == ["en-007", "en-q1"] and items[0].aliases == ()  # Arrow's None = absent
    assert items[0].origin == f"{tmp_path / 'hub'}[1]"
    with pytest.raises(DataError, match=r"cannot load hub dataset .* split 'train'"):
        load_source(f"hf:{tmp_path / 'hub'}", langs=None)


# --- MKQA --------------------------------------------------------------------------------------

def answer(kind, text, aliases=()):
    return [{"type": kind, "entity": "Q1", "text": text, "aliases": list(aliases)}]


def record(example_id, queries: dict, answers: dict) -> dict:
    return {"example_id": example_id, "query": queries["en"], "queries": queries, "answers": answers}


def entity(example_id, question, en, de, zh, aliases=()):
    qs = {"en": question, "de": f"{question} (de)", "zh_cn": f"{question}（中文）"}
    ans = {"en": answer("entity", en, aliases), "de": answer("entity", de) if de else None,
           "zh_cn": answer("entity", zh)}
    return record(example_id, qs, ans)


def same(example_id, question, kind, text):
    qs = {"en": question, "de": f"{question} (de)", "zh_cn": f"{question}（中文）"}
    return record(example_id, qs, {lang: answer(kind, text) for lang in qs})


MKQA = [
    entity(101, "capital of France", "Paris", "Paris", "巴黎", aliases=["Paris, France", "Paris"]),
    entity(102, "capital of Germany", "Berlin", "Berlin", "柏林"),
    entity(103, "capital of Italy", "Rome", "Rom", "罗马", aliases=["Roma"]),
    entity(104, "capital of Spain", "Madrid", "Madrid", "马德里"),
    entity(105, "film set in Texas", "Paris, Texas", "Paris (Texas)", "德克萨斯州巴黎"),  # mentions Paris
    entity(106, "capital of Japan", "Tokyo", None, "东京"),  # no German answer
    same(201, "continents", "number", "7"),
    same(202, "legs of a spider", "number", "8"),
    same(203, "bones of an adult", "number", "206"),
    same(204, "months in a year", "number", "12"),
    same(301, "end of WWII", "date", "1945"),  # the only date: no honest distractors
    same(401, "meaning of life", "unanswerable", None),
    same(402, "is the sky blue", "binary", "yes"),
    same(403, "why is the sky blue", "long_answer", "Rayleigh scattering makes it so"),
    record(404, {"en": "who was Lincoln", "de": "wer war Lincoln", "zh_cn": "林肯是谁"},
           {"en": answer("entity", "the sixteenth president of the United States"),
            "de": answer("entity", "der sechzehnte Präsident der Vereinigten Staaten"),
            "zh_cn": answer("entity", "亚伯拉罕·林肯，美国第十六任总统，领导了南北战争并且废除了奴隶制度")}),
]
SKIPPED = {"binary": 3, "long_answer": 3, "too_few_distractors": 3, "too_long": 3, "unanswerable": 4}


def flat(records: list[dict]) -> list[dict]:
    """The flat per-language form of the same records."""
    return [{"id": str(r["example_id"]), "lang": lang, "question": q, "answers": r["answers"][lang]}
            for r in records for lang, q in r["queries"].items() if r["answers"][lang] is not None]


@pytest.fixture
def nested(tmp_path) -> str:
    with gzip.open(tmp_path / "mkqa.jsonl.gz", "wt", encoding="utf-8") as fh:
        fh.write("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in MKQA))
    return f"mkqa:{tmp_path / 'mkqa.jsonl.gz'}"


def by_key(items: list[Item]) -> dict[str, Item]:
    return {item.key: item for item in items}


def test_mkqa_items_and_skip_counts(nested):
    items, report = load_source_with_report(nested, langs=None)
    assert report.skipped == SKIPPED
    assert report.items == len(items) == 5 * 3 + 2 + 4 * 3
    assert sorted({i.lang for i in items}) == ["de", "en", "zh"]  # zh_cn -> zh
    got = by_key(items)
    paris = got["en-101"]
    assert (paris.question, paris.answer, paris.aliases, paris.type, paris.source) == (
        "capital of France", "Paris", ("Paris, France",), "entity", "mkqa")
    assert got["zh-101"].answer == "巴黎" and got["de-103"].answer == "Rom"
    assert got["en-201"].type == "number" and "de-106" not in got and "zh-106" in got
    assert not any(i.id in {"301", "401", "402", "403", "404"} for i in items)
    assert paris.origin.endswith("mkqa.jsonl.gz:1")


def test_mkqa_distractors_are_honest_and_the_same_entities_in_every_language(nested):
    items, report = load_source_with_report(nested, langs=None)
    got = by_key(items)
    for item in items:
        picked = report.distractor_ids[item.id]
        assert len(item.distractors) >= 3 and len(picked) == len(item.distractors)
        assert item.id not in picked
        # the golds of those other ids, of the same type, rendered in this item's language
        assert item.distractors == tuple(got[f"{item.lang}-{other}"].answer for other in picked)
        assert all(got[f"{item.lang}-{other}"].type == item.type for other in picked)
        for distractor in item.distractors:
            for form in (item.answer, *item.aliases):
                assert not mentions(distractor, form, item.lang) and not mentions(form, distractor, item.lang)
    # 105 ("Paris, Texas") mentions Paris and 106 has no German answer: 101 gets exactly 102-104.
    assert sorted(report.distractor_ids["101"]) == ["102", "103", "104"]
    assert got["de-101"].distractors == tuple({"102": "Berlin", "103": "Rom", "104": "Madrid"}[o]
                                              for o in report.distractor_ids["101"])
    assert "101" not in report.distractor_ids["105"]
    assert set(report.distractor_ids["201"]) == {"202", "203", "204"}


def test_mkqa_flat_form_gives_the_same_items(nested, tmp_path):
    spec = write_jsonl(tmp_path / "flat.jsonl", flat(MKQA))
    items, report = load_source_with_report(f"mkqa:{spec}", langs=None)
    expected, expected_report = load_source_with_report(nested, langs=None)
    assert content(items) == content(expected)
    assert report.skipped == {**SKIPPED, "unanswerable": 3}  # flat rows cannot list an absent language
    assert items[0].origin.startswith(spec + ":")


def test_mkqa_is_deterministic_and_independent_of_order_and_langs(nested, tmp_path):
    first = load_source(nested, langs=None)
    assert content(load_source(nested, langs=None)) == content(first)
    (tmp_path / "dir").mkdir()
    write_jsonl(tmp_path / "dir" / "part.jsonl", MKQA[::-1])
    assert content(load_source(f"mkqa:{tmp_path / 'dir'}", langs=None)) == content(first)
    only, report = load_source_with_report(nested, langs=["zh_cn", "en"])
    assert content(only) == content([i for lang in ("zh", "en") for i in first if i.lang == lang])
    assert report.skipped == {k: v * 2 // 3 for k, v in SKIPPED.items() if k != "unanswerable"} | {"unanswerable": 2}


def test_mkqa_from_the_hub_decodes_class_label_types(monkeypatch):
    """The hub copy stores answer types as ClassLabel indices; the loader is given a hub id."""
    from datasets import Dataset

    codes = {name: n for n, name in enumerate(mkqa.MKQA_TYPES)}
    rows = [{**r, "example_id": str(r["example_id"]),
             "answers": {lang: [{**a, "type": codes[a["type"]]} for a in ans] if ans else []
                         for lang, ans in r["answers"].items()}} for r in MKQA]
    calls = []
    monkeypatch.setattr(sources, "_load", lambda *a, **k: calls.append((a, k)) or Dataset.from_list(rows))
    items, report = load_source_with_report("mkqa:apple/mkqa", langs=["en"])
    assert calls == [(("apple/mkqa",), {"split": "train"})]
    assert len(items) == 10 and report.skipped == {k: v // 3 for k, v in SKIPPED.items()}
    assert items[0].origin == "apple/mkqa[0]"


def test_mkqa_language_without_three_usable_candidates_is_skipped_and_counted(tmp_path):
    """ja has answers for only 3 ids: 2 candidates each, so ja is dropped; en keeps all 5 items."""
    records = [record(n, {"en": f"number {n}", "ja": f"数 {n}"},
                      {"en": answer("number", str(n)), "ja": answer("number", str(n)) if n < 4 else None})
               for n in range(1, 6)]
    items, report = load_source_with_report(f"mkqa:{write_jsonl(tmp_path / 'n.jsonl', records)}", langs=None)
    assert [i.key for i in items] == ["en-1", "en-2", "en-3", "en-4", "en-5"]
    assert report.skipped == {"too_few_distractors": 3, "unanswerable": 2}
    assert all(len(i.distractors) == 3 and i.answer not in i.distractors for i in items)


def test_mkqa_malformed_records_list_every_problem(tmp_path):
    path = write_jsonl(tmp_path / "bad.jsonl", [MKQA[0], {"queries": {"en": "q"}, "answers": {"en": []}},
                                                 {**MKQA[1], "answers": {"en": "Berlin"}}, [1, 2]])
    with pytest.raises(DataError) as err:
        load_source(f"mkqa:{path}", langs=None)
    message = str(err.value)
    assert message.startswith("3 problem(s)")
    assert f"{path}:2: field 'example_id' is missing" in message
    assert f"{path}:3: field 'answers' for 'en' must be a list" in message
    assert f"{path}:4: not an MKQA record" in message


# MKQA as the MIA 2022 shared task ships it: one mkqa-<lang>.jsonl per language, one record per
# question, ``answers`` a list of plain strings, the language a suffix of the id.
MIA = {  # id: (question, type the answer text implies, {lang: answers})
    "-1002689427646740593": ("who was the first president of india", "entity", {
        "en": ["Rajendra Prasad", "Dr. Rajendra Prasad"], "es": ["Rajendra Prasad"],
        "ja": ["ラージェーンドラ・プラサード"], "zh_cn": ["拉金德拉·普拉萨德"]}),
    "4174294807029812925": ("capital of new mexico", "entity", {
        "en": ["Santa Fe"], "es": ["Santa Fe"], "ja": ["サンタフェ"], "zh_cn": ["圣菲"]}),
    "-4541286593031074150": ("first man on the moon", "entity", {
        "en": ["Neil Armstrong"], "es": ["Neil Armstrong"], "ja": ["ニール・アームストロング"], "zh_cn": ["尼尔·阿姆斯特朗"]}),
    "-3604772607148737163": ("who wrote the grapes of wrath", "entity", {
        "en": ["John Steinbeck"], "es": ["John Steinbeck"], "ja": ["ジョン・スタインベック"], "zh_cn": ["约翰·斯坦贝克"]}),
    "-6802534628745605728": ("total number of death row inmates in the us", "number", {
        "en": ["2,718"], "es": ["2.718"], "ja": ["2,718"], "zh_cn": ["2718"]}),
    "5221379190316893203": ("how many bones in an adult body", "number", {
        lang: ["206"] for lang in ("en", "es", "ja", "zh_cn")}),
    "-7760465617233290001": ("how many states in the us", "number", {
        lang: ["50"] for lang in ("en", "es", "ja", "zh_cn")}),
    "866109962367101234": ("how many players on a soccer team", "number", {
        lang: ["11"] for lang in ("en", "es", "ja", "zh_cn")}),
    "3401337839512212231": ("when did india become a republic", "date", {
        "en": ["26 January 1950"], "es": ["26 de enero de 1950"], "ja": ["1950年1月26日"], "zh_cn": ["1950年1月26日"]}),
    "-2250148262931958452": ("when did world war 2 end", "date", {
        "en": ["1945"], "es": ["1945"], "ja": ["1945年"], "zh_cn": ["1945年"]}),
    "7015489326508321774": ("when did man land on the moon", "date", {
        "en": ["July 20, 1969"], "es": ["20 de julio de 1969"], "ja": ["1969年7月20日"], "zh_cn": ["1969年7月20日"]}),
    "-5529032281911386510": ("when did the berlin wall fall", "date", {
        "en": ["9 November 1989"], "es": ["9 de noviembre de 1989"], "ja": ["1989年11月9日"],
        "zh_cn": ["1989年11月9日"]}),
    "-8484496945095191237": ("what is the meaning of life", None, {
        lang: ["No Answer"] for lang in ("en", "es", "ja", "zh_cn")}),
}


@pytest.fixture
def mia(tmp_path) -> str:
    for lang in ("en", "es", "ja", "zh_cn"):
        write_jsonl(tmp_path / f"mkqa-{lang}.jsonl", [
            {"id": f"{ident}_{lang}", "lang": lang, "question": f"{question} ({lang})", "answers": answers[lang],
             "split": "dev", "source": "mkqa"} for ident, (question, _, answers) in MIA.items()])
    return f"mkqa:{tmp_path}"


def test_mkqa_as_the_mia_shared_task_ships_it(mia):
    items, report = load_source_with_report(mia, langs=None)
    got = by_key(items)
    answered = [ident for ident, (_, kind, _) in MIA.items() if kind]
    # every answered question, in every language, under the id without its language suffix
    assert set(got) == {f"{lang}-{ident}" for ident in answered for lang in ("en", "es", "ja", "zh")}
    assert report.skipped == {"unanswerable": 4}  # "No Answer", as the shared task's scorer skips it
    for ident in answered:
        question, kind, answers = MIA[ident]
        for lang, given in answers.items():
            item = got[f"{'zh' if lang == 'zh_cn' else lang}-{ident}"]
            assert (item.question, item.answer, item.aliases) == (f"{question} ({lang})", given[0], tuple(given[1:]))
            assert item.type == kind  # inferred from the answer text: a number, a date, else an entity
            picked = report.distractor_ids[ident]
            assert len(picked) == 3 and ident not in picked and all(MIA[other][1] == kind for other in picked)
            assert item.distractors == tuple(got[f"{item.lang}-{other}"].answer for other in picked)


def test_mkqa_numeric_ids_align_whatever_language_suffix_they_carry(tmp_path):
    """MIA's surprise-language rows (lang 'tl') keep the English suffix: ``234131699687376880_en``."""
    rows = [{"id": f"{n}_en", "lang": lang, "question": f"{lang} {n}?", "answers": [str(n % 97)]}
            for lang in ("en", "tl") for n in (-234131699687376880, 7482564272125559552, 11, 12)]
    items = load_source(f"mkqa:{write_jsonl(tmp_path / 'mia.jsonl', rows)}", langs=None)
    assert {i.key for i in items} == {f"{lang}-{row['id'][:-3]}" for lang in ("en", "tl") for row in rows}


def test_mkqa_plain_string_answers_in_the_nested_form_too(tmp_path):
    records = [record(n, {"en": f"number {n}", "fr": f"nombre {n}"}, {"en": [str(n)], "fr": [str(n)]})
               for n in range(1, 5)]
    items = load_source(f"mkqa:{write_jsonl(tmp_path / 'n.jsonl', records)}", langs=None)
    assert len(items) == 8 and {i.type for i in items} == {"number"}


@pytest.mark.parametrize("text, kind", [
    ("Rajendra Prasad", "entity"), ("206", "number"), ("2,718", "number"), ("1.5", "number"), ("-40", "number"),
    ("1945", "date"), ("1945年", "date"), ("26 January 1950", "date"), ("July 20, 1969", "date"),
    ("20 de julio de 1969", "date"), ("9. November 1989", "date"), ("1989-11-09", "date"),
    ("1989年11月9日", "date"), ("9 ноября 1989", "date"), ("Windows 2000", "entity"), ("Apollo 11", "entity"),
    ("Blink-182", "entity"), ("Maroon 5", "entity"),
])
def test_answer_type_of_a_plain_string(text, kind):
    assert mkqa.answer_kind(text) == kind


WORDS = st.sampled_from("alpha beta gamma delta omega sigma kappa theta zeta iota".split())


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(golds=st.lists(st.tuples(st.lists(WORDS, min_size=1, max_size=2), st.booleans()), min_size=1, max_size=9))
def test_mkqa_distractor_invariants_hold_on_random_sets(tmp_path, golds):
    records = [record(n, {"en": f"question {n}", "fr": f"question {n} fr"},
                      {"en": answer("entity", " ".join(words)),
                       "fr": answer("entity", " ".join(words) + " fr") if has_fr else None})
               for n, (words, has_fr) in enumerate(golds)]
    spec = write_jsonl(tmp_path / "random.jsonl", records)
    try:
        items, report = load_source_with_report(f"mkqa:{spec}", langs=None)
    except DataError as exc:
        assert "no items" in str(exc)
        return
    for item in items:
        picked = report.distractor_ids[item.id]
        assert len(set(picked)) == len(item.distractors) == 3 and item.id not in picked
        assert item.distractors == tuple(records[int(o)]["answers"][item.lang][0]["text"] for o in picked)
        for d in item.distractors:
            assert not mentions(d, item.answer, item.lang) and not mentions(item.answer, d, item.lang)
    assert sum(report.skipped.values()) + len(items) == 2 * len(golds)  # every (id, lang) is accounted for


def test_load_items_reads_mkqa_specs_with_the_same_subset_rule(nested):
    notes: list[str] = []
    items = load_items(nested, langs=["en", "de"], limit_per_lang=3, seed=1, note=notes.append)
    en = [i.id for i in items if i.lang == "en"]
    assert len(en) == 3 and en == [i.id for i in items if i.lang == "de"]
    assert notes and "skipped" in notes[0] and "unanswerable" in notes[0]


# ----------------------------------------------------------------------------- a directory of <lang>.jsonl files

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
