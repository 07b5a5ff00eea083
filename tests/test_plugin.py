"""The plugin through pytester: the shipped suite on the designed world (``suite_world``), where for
each language one item must FAIL, one XFAIL and one PASS.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from suite_world import BIDI, HOSTILE, QUESTIONS, RAW, design, suite, world  # noqa: F401 (fixtures)
from tiny import write_items


def test_test_ids_follow_the_contract(suite):
    result = suite("--collect-only", "-q")
    ids = {line.strip() for line in result.outlines if "::" in line}
    assert ids == {f"illusion_tests/test_consistency.py::test_mc_implies_generation[{lang}-{name}]"
                   for lang in ("en", "fr") for name in ("fail", "xfail", "pass")}


def test_outcomes_failure_message_and_table(suite):
    result = suite("-rxX")
    result.assert_outcomes(passed=2, failed=2, xfailed=2)
    out = result.stdout.str()
    assert "XFAIL illusion_tests/test_consistency.py::test_mc_implies_generation[en-xfail]" in out
    assert "pre-existing illusion" in out
    block = out[out.index("[en-fail] recognition-only"):]
    for field in ("question:    What is the name of the old river?", "gold:", "MC scores:   *", "greedy:",
                  "gold rank:   candidate", "| reference", "recovery:    ", "reference:   neither"):
        assert field in block
    assert "Traceback" not in out  # failures are messages, not stack traces
    said = [line for line in result.stderr.str().split("\n") if "[illusion" in line]
    assert said and all("\r" not in line and "\x1b" not in line for line in said)  # not a terminal: plain lines
    assert any(re.fullmatch(r"\[illusion\] candidate: \d+/\d+ items.*", line) for line in said), said
    table = out[out.index("benchmark-illusion"):]
    assert re.search(r"^en\s+3\s", table, re.M) and re.search(r"^fr\s+3\s", table, re.M)


def test_report_json_fields_match_the_run(suite, pytester):
    suite("--illusion-report", "out", "--illusion-langs", "en").assert_outcomes(passed=1, failed=1, xfailed=1)
    report = json.loads((pytester.path / "out" / "report.json").read_text())
    assert report["config"]["model"].endswith("cand") and report["config"]["langs"] == ["en"]
    en = report["languages"]["en"]
    assert (en["items"], en["recognition_only"], en["pruning_induced"]) == (3, 2, 1)
    assert en["tests"] == {"passed": 1, "failed": 1, "xfailed": 1, "skipped": 0,
                           "by_test": {"mc_implies_generation": {"passed": 1, "failed": 1, "xfailed": 1}}}
    assert en["illusion_rate"] == pytest.approx(2 / en["mc_correct"])
    failed = next(i for i in report["items"] if i["id"] == "fail")
    assert failed["prompt"].startswith("<|im_start|>user\n") and failed["options"][0] == failed["answer"]
    for side in ("candidate", "reference"):
        assert set(failed[side]) >= {"mc_correct", "gen_correct", "category", "mc_scores", "gold_rank",
                                     "gold_logprob", "generation", "recovered_by"}
    assert failed["candidate"]["category"] == "recognition_only" and failed["outcome"] == "fail"
    assert failed["candidate"]["recovery"] in ("demoted", "erased")
    assert (failed["candidate"]["recovery"] == "demoted") == bool(failed["candidate"]["recovered_by"])
    assert report["config"]["recovery"] == "induced"  # the default: probes on the failing items only
    assert en["demoted"] + en["erased"] == en["pruning_induced"] == 1 and en["not_probed"] == 1
    xfailed = next(i for i in report["items"] if i["id"] == "xfail")
    assert xfailed["candidate"]["recovered_by"] is None and xfailed["candidate"]["recovery"] == "not_probed"


def _scoped_report(suite, pytester, scope: str, *extra: str) -> tuple[dict, str]:
    out = f"rec-{scope}-{len(extra)}"
    result = suite("--illusion-recovery", scope, "--illusion-report", out, *extra)
    result.assert_outcomes(passed=2, failed=2, xfailed=2)
    report = json.loads((pytester.path / out / "report.json").read_text())
    return report, result.stdout.str() + result.stderr.str()


RECOVERY_FIELDS = ("recovered_by", "recovery")


def _without_recovery(item: dict) -> dict:
    return {**item, "candidate": {k: v for k, v in item["candidate"].items() if k not in RECOVERY_FIELDS}}


def test_recovery_scope_changes_which_items_are_probed_and_nothing_else(suite, pytester, monkeypatch):
    """induced probes exactly the failing items, all every recognition-only one, off none; every
    other field, outcome and count is the same, and where two scopes both probe an item they agree.
    The store serves each scope from the others' work without reporting an unprobed item as erased."""
    monkeypatch.setenv("ILLUSION_CACHE", str(pytester.path / "scope-cache"))
    induced, induced_text = _scoped_report(suite, pytester, "induced")  # cold: probes the failing items only
    all_, all_text = _scoped_report(suite, pytester, "all")  # probes only the xfail items the store lacks
    off, off_text = _scoped_report(suite, pytester, "off")
    again, again_text = _scoped_report(suite, pytester, "induced", "-rA")  # warm, after an all run
    cold_all, _ = _scoped_report(suite, pytester, "all", "--illusion-no-cache")
    reports = {"induced": induced, "all": all_, "off": off, "again": again, "cold_all": cold_all}
    for name, report in reports.items():
        assert report["config"]["recovery"] == {"again": "induced", "cold_all": "all"}.get(name, name)
    items = {name: {(i["lang"], i["id"]): i for i in r["items"]} for name, r in reports.items()}
    keys = set(items["induced"])
    assert all(set(by_key) == keys for by_key in items.values())
    for key in keys:  # MC, generation, rank, category, outcome: identical whatever the scope
        assert len({json.dumps(_without_recovery(by_key[key]), sort_keys=True) for by_key in items.values()}) == 1
    probed = {name: {k for k, i in by_key.items() if i["candidate"]["category"] == "recognition_only"
                     and i["candidate"]["recovered_by"] is not None} for name, by_key in items.items()}
    failing = {k for k, i in items["induced"].items() if i["outcome"] == "fail"}
    illusions = {k for k, i in items["induced"].items() if i["candidate"]["category"] == "recognition_only"}
    assert failing and failing < illusions  # the designed world has both kinds
    assert probed["induced"] == probed["again"] == failing
    assert probed["all"] == probed["cold_all"] == illusions and probed["off"] == set()
    for key in illusions:
        verdicts = {json.dumps(items[name][key]["candidate"]["recovered_by"]) for name in ("all", "cold_all")}
        verdicts |= {json.dumps(items[name][key]["candidate"]["recovered_by"]) for name in ("induced", "again")
                     if key in failing}
        assert len(verdicts) == 1, (key, verdicts)  # the same probes found on items both scopes probe
        for name, by_key in items.items():
            recovery = by_key[key]["candidate"]["recovery"]
            assert (recovery == "not_probed") == (key not in probed[name])
            assert (recovery == "not_probed") == (by_key[key]["candidate"]["recovered_by"] is None)
    for name, report in reports.items():
        for lang, stats in report["languages"].items():
            mine = [i for k, i in items[name].items() if k[0] == lang]
            assert stats["not_probed"] == sum(i["candidate"]["recovery"] == "not_probed" for i in mine)
            assert stats["demoted"] + stats["erased"] + stats["not_probed"] == stats["recognition_only"]
            assert stats["reference"]["not_probed"] is None
    # the work each run did: the failing items first, then only the rest, then nothing
    assert "recovery probes on 2 pruning-induced recognition-only items" in induced_text
    assert "recovery probes on 2 recognition-only items (--illusion-recovery all)" in all_text
    assert "recovery probes on" not in off_text and "recovery probes on" not in again_text
    assert "ran on the pruning-induced recognition-only items only" in again_text  # the table says the scope
    assert "ran on no item (--illusion-recovery off)" in off_text
    md = (pytester.path / "rec-off-0" / "report.md").read_text()
    assert "Recovery probes ran on no item (--illusion-recovery off)." in md and "not probed" in md
    html = (pytester.path / "rec-induced-0" / "report.html").read_text()
    assert "Recovery probes ran on the pruning-induced recognition-only items only" in html


def test_a_bad_recovery_scope_is_a_usage_error(suite):
    result = suite("--illusion-recovery", "some")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "--illusion-recovery 'some': choose induced" in result.stderr.str()


def test_junit_xml_carries_item_properties(suite, pytester):
    import xml.etree.ElementTree as ET

    suite("-k", "en-fail", "--junitxml", "junit.xml")
    case = ET.parse(pytester.path / "junit.xml").getroot().find(".//testcase")
    props = {p.get("name"): p.get("value") for p in case.iter("property")}
    assert props["illusion_category"] == "recognition_only"
    assert int(props["illusion_gold_rank"]) >= 1 and "illusion_recovered_by" in props


def test_k_selects_languages_and_computes_only_those(suite, pytester):
    result = suite("-k", "fr", "--illusion-report", "out")
    result.assert_outcomes(passed=1, failed=1, xfailed=1)
    report = json.loads((pytester.path / "out" / "report.json").read_text())
    assert {i["lang"] for i in report["items"]} == {"fr"} and list(report["languages"]) == ["fr"]


def relabel(world, directory: Path, langs: dict[str, str]) -> Path:
    """The world's items with their languages renamed, e.g. en -> pt-BR (models do not care)."""
    rows = [{**json.loads(line), "lang": new} for old, new in langs.items()
            for line in (world["data"] / f"{old}.jsonl").read_text().splitlines()]
    return write_items(directory, rows)


def test_hyphenated_languages_are_counted_under_their_own_name(suite, pytester, world):
    """pt-BR-fail is item 'fail' of pt-BR, not item 'BR-fail' of pt: report.json counts every test
    (a gate that errors in setup too) under its language, with and without xdist."""
    data = relabel(world, pytester.path / "qa-tags", {"en": "pt-BR", "fr": "zh-Hans"})
    suite.add("test_languages.py")
    pytester.makeconftest("""
        import pytest

        @pytest.fixture(autouse=True)
        def broken_setup(request):
            if request.node.name == "test_language_gate[zh-Hans]":
                raise RuntimeError("setup breaks")
    """)
    for run, args in (("serial", ()), ("parallel", ("-n", "2"))):
        suite("--illusion-dataset", str(data), "--illusion-report", run, *args, subprocess=bool(args))
        report = json.loads((pytester.path / run / "report.json").read_text())
        assert list(report["languages"]) == ["pt-BR", "zh-Hans"]
        assert {(i["lang"], i["id"]) for i in report["items"]} == {
            (lang, name) for lang in ("pt-BR", "zh-Hans") for name in ("fail", "xfail", "pass")}
        for lang, gate in (("pt-BR", {"passed": 1}), ("zh-Hans", {"failed": 1})):  # an error in setup
            tests = report["languages"][lang]["tests"]
            assert tests["by_test"] == {"mc_implies_generation": {"passed": 1, "failed": 1, "xfailed": 1},
                                        "language_gate": gate}, (run, lang)
            assert report["languages"][lang]["items"] == 3


def test_items_whose_test_ids_collide_are_rejected(suite, pytester, world):
    rows = [json.loads(line) for line in (world["data"] / "en.jsonl").read_text().splitlines()]
    data = write_items(pytester.path / "qa-clash", [{**rows[0], "lang": "pt-BR", "id": "q1"},
                                                     {**rows[1], "lang": "pt", "id": "BR-q1"}])
    result = suite("--illusion-dataset", str(data))
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    text = result.stdout.str() + result.stderr.str()
    assert "test id 'pt-BR-q1'" in text and "Traceback" not in text


def outcomes(result) -> dict[str, str]:
    found = {}
    for line in result.outlines:
        match = re.match(r"^(PASSED|FAILED|XFAIL|XPASS|ERROR)\s+\S*\[(\w+-\w+)\]", line)
        if match:
            found[match.group(2)] = match.group(1)
    return found


def test_xdist_gives_the_same_outcomes_and_report(suite, pytester):
    # No store: both runs must compute, or the second would only read the first's results.
    serial = suite("-rA", "--illusion-no-cache", "--illusion-report", "serial", subprocess=True)
    parallel = suite("-rA", "-n", "2", "--illusion-no-cache", "--illusion-report", "parallel", subprocess=True)
    assert len(outcomes(serial)) == 6
    assert outcomes(parallel) == outcomes(serial)
    serial_items, parallel_items = (json.loads((pytester.path / d / "report.json").read_text())["items"]
                                    for d in ("serial", "parallel"))
    # Different batch compositions: verdicts, ranks and text identical; log-probs equal to float noise.
    assert [without_floats(i) for i in serial_items] == [without_floats(i) for i in parallel_items]
    for one, two in zip(serial_items, parallel_items):
        assert two["candidate"]["mc_scores"] == pytest.approx(one["candidate"]["mc_scores"], abs=1e-4)


def without_floats(record: dict) -> dict:
    floats = ("mc_scores", "gold_logprob", "mc_margin")
    return {k: ({kk: vv for kk, vv in v.items() if kk not in floats} if isinstance(v, dict) else v)
            for k, v in record.items()}

def test_bad_model_path_stops_the_run_with_the_fix(suite, tmp_path):
    result = suite("--illusion-model", str(tmp_path / "missing-dir"))
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    out = result.stdout.str()
    assert "is not a builtin (smollm2-135m), an existing checkpoint directory" in out
    assert "Traceback" not in out


def test_in_process_pruning_makes_the_candidate_and_is_cached(suite, pytester, world):
    args = ("--illusion-model", str(world["ref"]), "--illusion-prune", "wanda:0.5", "--illusion-calibration-samples",
            "4", "--illusion-calibration-seqlen", "32", "--illusion-report", "out", "-k", "en-")
    first = suite(*args)
    assert first.ret in (pytest.ExitCode.OK, pytest.ExitCode.TESTS_FAILED)
    assert "pruning " in first.stdout.str() + first.stderr.str()
    report = json.loads((pytester.path / "out" / "report.json").read_text())
    assert report["config"]["prune"] == "wanda:0.5" and report["config"]["calibration"]["samples"] == 4
    assert any(i["candidate"]["mc_scores"] != i["reference"]["mc_scores"] for i in report["items"])
    pruned = list((world["cache"] / "pruned").glob("ref-wanda-0.5-*/model.safetensors"))
    assert len(pruned) == 1
    second = suite(*args)
    assert "pruning " not in second.stdout.str() + second.stderr.str()  # reused from the cache
    assert second.parseoutcomes() == first.parseoutcomes()

def test_xdist_workers_compute_each_item_once_and_clean_up(suite, pytester, world, monkeypatch):
    """24 items in three blocks: every item is probed exactly once over both workers, results reach
    the worker whose tests need them (the gate needs a whole language), and the run directory goes."""
    rows = [json.loads(line) for lang in ("en", "fr")
            for line in (world["data"] / f"{lang}.jsonl").read_text().splitlines()]
    data = write_items(pytester.path / "qa24", [{**row, "id": f"{row['id']}{copy}"} for row in rows
                                                 for copy in range(4)])
    monkeypatch.setenv("TMPDIR", str(pytester.mkdir("tmp")))
    suite.add("test_languages.py")
    args = ("-rA", "--illusion-dataset", str(data), "--illusion-no-cache")
    serial = suite(*args, subprocess=True)
    parallel = suite(*args, "-n", "2", subprocess=True)
    assert len(outcomes(serial)) == 24 and outcomes(parallel) == outcomes(serial)
    assert parallel.parseoutcomes() == serial.parseoutcomes()  # the two gate tests too
    probed = re.findall(r"\[illusion (gw\d)\] probing (\d+) items on the (reference|candidate)",
                        parallel.stderr.str())
    for side in ("reference", "candidate"):
        assert sum(int(n) for _, n, s in probed if s == side) == 24, probed
    assert not list((pytester.path / "tmp").glob("illusion-run-*"))
    monkeypatch.setenv("ILLUSION_CACHE", str(pytester.path / "fresh-cache"))  # the store, shared by workers
    cold = suite(*args[:-1], "-n", "2", subprocess=True)
    warm = suite(*args[:-1], "-n", "2", subprocess=True)
    assert outcomes(cold) == outcomes(warm) == outcomes(serial)
    assert "loading " in cold.stderr.str() and "loading " not in warm.stderr.str()  # read, nothing loaded


def test_warm_rerun_reads_the_store_and_loads_no_model(suite, pytester, world, monkeypatch):
    monkeypatch.setenv("ILLUSION_CACHE", str(pytester.path / "fresh-cache"))
    cold = suite("-k", "fr-", "--illusion-report", "cold")
    warm = suite("-k", "fr-", "--illusion-report", "warm")
    assert "loading " in cold.stdout.str() + cold.stderr.str()
    text = warm.stdout.str() + warm.stderr.str()
    assert "loading " not in text and "3 results from the store, 0 to compute" in text
    assert warm.parseoutcomes() == cold.parseoutcomes()
    items = [json.loads((pytester.path / d / "report.json").read_text())["items"] for d in ("cold", "warm")]
    assert items[0] == items[1]
    uncached = suite("-k", "fr-", "--illusion-no-cache")
    assert "loading " in uncached.stdout.str() + uncached.stderr.str()


def test_a_damaged_store_is_replaced_once_and_the_run_goes_on(suite, pytester, monkeypatch):
    from test_store import damage

    monkeypatch.setenv("ILLUSION_CACHE", str(pytester.path / "damaged-cache"))
    cold = suite("-k", "fr-")
    damage(pytester.path / "damaged-cache" / "results.sqlite3", "results table")
    rerun = suite("-k", "fr-")
    assert rerun.parseoutcomes() == cold.parseoutcomes()  # not one ERROR from the store
    text = rerun.stdout.str() + rerun.stderr.str()
    assert text.count("moved it to") == 1 and "malformed" in text and "Traceback" not in text
    assert "results from the store" not in text  # nothing read from the damaged file: all recomputed


def test_language_gate_ids_messages_and_options(suite, pytester):
    suite.add("test_languages.py")
    ids = {line.strip() for line in suite("--collect-only", "-q").outlines if "test_language_gate" in line}
    assert ids == {"illusion_tests/test_languages.py::test_language_gate[en]",
                   "illusion_tests/test_languages.py::test_language_gate[fr]"}
    # One lost item among three is no evidence: the McNemar part passes at any sensible alpha.
    suite("-k", "gate", "--junitxml", "junit.xml").assert_outcomes(passed=2)
    import xml.etree.ElementTree as ET

    props = {p.get("name") for p in ET.parse(pytester.path / "junit.xml").getroot().iter("property")}
    assert {"illusion_gate_p_value", "illusion_gate_illusion_rate"} <= props
    # The designed candidate has a recognition-only item in each language: a zero budget fails both.
    result = suite("-k", "gate", "--illusion-max-illusion-rate", "0")
    result.assert_outcomes(failed=2)
    out = result.stdout.str()
    assert "[en] FAILED: illusion rate over budget" in out and "95% Wilson interval [" in out
    assert "exact McNemar p = " in out and "Traceback" not in out
    for bad, name in (("2", "--illusion-alpha"), ("x", "--illusion-alpha")):
        bad_run = suite("-k", "gate", "--illusion-alpha", bad)
        assert bad_run.ret == pytest.ExitCode.USAGE_ERROR and name in bad_run.stderr.str()

# --- hostile text: the terminal stays clean ---------------------------------------------------------


def test_dataset_text_reaches_the_terminal_escaped(suite, world, pytester):
    rows = design("en", world["ref"], world["cand"], question=QUESTIONS["en"] + HOSTILE + BIDI)
    data = write_items(pytester.path / "hostile", [{**row, "aliases": [BIDI + "alias" + HOSTILE]} for row in rows])
    result = suite("-rxX", "--illusion-dataset", str(data), "--illusion-no-cache")
    result.assert_outcomes(passed=1, failed=1, xfailed=1)
    text = result.stdout.str() + result.stderr.str()
    assert not RAW.search(text), RAW.findall(text)
    assert "question:    What is the name of the old river?\\x1b[2J\\x1b]0;TITLE\\x07\\u202e" in text
    assert "aliases: \\u202ealias\\x1b[2J" in text

def test_an_id_with_control_characters_is_refused(suite, world, pytester):
    rows = [json.loads(line) for line in (world["data"] / "en.jsonl").read_text().splitlines()]
    rows[0]["id"] = "fail\x1b[31m"
    data = write_items(pytester.path / "bad-ids", rows)
    result = suite("--illusion-dataset", str(data))
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    text = result.stdout.str() + result.stderr.str()
    assert text.count("en.jsonl:1: field 'id'") == 1 and "control" in text
    assert not RAW.search(text) and "Traceback" not in text


# --- broken model files: the run stops once, with exit 4 ---------------------------------------------

def truncated_gguf(path: Path) -> Path:
    """100 bytes: a GGUF v3 header whose first metadata key runs past the end of the file."""
    import struct

    header = b"GGUF" + struct.pack("<IQQQ", 3, 1, 5, 1000)
    path.write_bytes(header + b"a" * (100 - len(header)))
    return path


@pytest.mark.parametrize("broken", ["safetensors", "gguf"])
def test_a_broken_model_file_stops_the_run_once_with_a_usage_error(suite, world, tmp_path, broken):
    if broken == "safetensors":
        model = Path(shutil.copytree(world["cand"], tmp_path / "truncated"))
        weights = model / "model.safetensors"
        weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
        args, named = ("--illusion-model", str(model)), str(weights)
    else:
        gguf = truncated_gguf(tmp_path / "tiny.gguf")
        args, named = ("--illusion-reference", str(gguf)), str(gguf)
    result = suite(*args)
    text = result.stdout.str() + result.stderr.str()
    assert result.ret == pytest.ExitCode.USAGE_ERROR, text
    lines = [line for line in text.splitlines() if "cannot load" in line]
    assert len(lines) == 1 and named in lines[0] and "truncated" in lines[0], lines
    assert "Traceback" not in text and "During handling" not in text and "trust-remote-code" not in text


def test_a_broken_model_stops_an_xdist_run_once_with_a_usage_error(suite, world, tmp_path):
    model = Path(shutil.copytree(world["cand"], tmp_path / "truncated"))
    weights = model / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    result = suite("-n", "2", "--illusion-model", str(model), subprocess=True)
    text = result.stdout.str() + result.stderr.str()
    assert result.ret == pytest.ExitCode.USAGE_ERROR, text
    lines = [line for line in text.splitlines() if "cannot load" in line]
    assert len(lines) == 1 and str(weights) in lines[0], lines
    assert "INTERNALERROR" not in text and "Traceback" not in text


def gate_properties(path: Path) -> dict[str, dict[str, str]]:
    """junit.xml: each gate test's stated numbers, by language."""
    import xml.etree.ElementTree as ET

    return {case.get("name").removeprefix("test_language_gate[").removesuffix("]"):
            {p.get("name"): p.get("value") for p in case.iter("property")}
            for case in ET.parse(path).getroot().iter("testcase") if "test_language_gate" in case.get("name")}


@pytest.mark.parametrize("selection, langs, consistency", [
    ("language_gate", ("en", "fr"), None),  # a gate-only run: the report and table still come
    ("en-fail or language_gate", ("en",), {"failed": 1}),  # one item plus the gate: the whole language
])
def test_report_languages_state_what_the_gates_stated(suite, pytester, selection, langs, consistency):
    suite.add("test_languages.py")
    result = suite("-k", selection, "--illusion-langs", ",".join(langs), "--illusion-report", "out",
                   "--junitxml", "junit.xml")
    report = json.loads((pytester.path / "out" / "report.json").read_text())
    stated = gate_properties(pytester.path / "junit.xml")
    assert list(report["languages"]) == list(langs) == list(stated)
    for lang in langs:
        row = report["languages"][lang]
        assert row["items"] == 3  # every item of the language, as the gate used
        assert str(row["gate"]["p_value"]) == stated[lang]["illusion_gate_p_value"]
        assert str(row["gate"]["illusion_rate"]) == stated[lang]["illusion_gate_illusion_rate"]
        assert str(row["illusion_rate"]) == stated[lang]["illusion_gate_illusion_rate"]
        assert "illusion_gate_records" not in stated[lang]  # the records reach the report, not junit.xml
        assert row["tests"]["by_test"] == {"language_gate": {"passed": 1},
                                           **({"mc_implies_generation": consistency} if consistency else {})}
        assert re.search(rf"^{lang}\s+3\s", result.stdout.str(), re.M)  # the table's row, over 3 items
