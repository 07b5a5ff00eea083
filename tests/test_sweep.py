"""``python -m illusion sweep`` through its command line, on a tiny model and a tiny dataset."""

from __future__ import annotations

import contextlib
import io
import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from illusion.__main__ import main
from illusion.errors import IllusionError
from illusion.sweep import parse_sparsities, render_svg
from tiny import item, write_items

HOSTILE = "<img src=x onerror=alert(1)>"  # a language code is a file name: it can hold markup
WORDS = "river mountain city stone light paper garden window music water forest silver".split()
FAST = ["--calibration-samples", "4", "--calibration-seqlen", "32", "--device", "cpu"]


def sweep_cli(*args: str) -> tuple[int, str]:
    """Run ``main(["sweep", ...])`` in-process; return (exit code, stderr)."""
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = main(["sweep", *args])
    return code, err.getvalue()


@pytest.fixture(scope="module")
def swept(tiny_dir, tmp_path_factory):
    """One sweep (sparsities given out of order) over two languages, then the same sweep again."""
    root = tmp_path_factory.mktemp("sweep")
    rows = [item(f"q{i}", lang, f"What is the name of the old {WORDS[4 * i]}?", WORDS[4 * i],
                 WORDS[4 * i + 1:4 * i + 4]) for lang in ("en", HOSTILE) for i in range(3)]
    data = write_items(root / "data", rows)
    args = ["--model", str(tiny_dir), "--method", "wanda", "--sparsities", "0.6,0.3", "--dataset", str(data), *FAST]
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ILLUSION_CACHE", str(root / "cache"))
        first = sweep_cli(*args, "--out", str(root / "out"))
        again = sweep_cli(*args, "--out", str(root / "again"))
    return {"root": root, "data": data, "first": first, "again": again,
            "record": json.loads((root / "out" / "sweep.json").read_text(encoding="utf-8"))}


def test_sweep_json_has_the_dense_point_then_each_sparsity_in_order(swept):
    code, err = swept["first"]
    assert code == 0, err
    record = swept["record"]
    assert record["version"] == 1 and record["config"]["method"] == "wanda"
    assert record["config"]["sparsities"] == [0.3, 0.6]
    assert record["config"]["recovery"] == "induced"  # the default, as in the pytest plugin
    html = (swept["root"] / "out" / "sweep.html").read_text(encoding="utf-8")
    assert "ran on the pruning-induced recognition-only items only (--illusion-recovery induced)" in html
    assert [p["sparsity"] for p in record["points"]] == [0.0, 0.3, 0.6]
    assert [p["recipe"] for p in record["points"]] == [None, "wanda:0.3", "wanda:0.6"]
    for point in record["points"]:
        overall, langs = point["overall"], point["languages"]
        assert list(langs) == [HOSTILE, "en"]  # the dataset's language order (sorted file names)
        for name in ("items", "mc_correct", "gen_correct", "recognition_only", "pruning_induced"):
            assert overall[name] == sum(stats[name] for stats in langs.values())
        for stats in (overall, *langs.values()):
            assert stats["mc_accuracy"] == stats["mc_correct"] / stats["items"]
            assert stats["gen_accuracy"] == stats["gen_correct"] / stats["items"]
            expected = stats["recognition_only"] / stats["mc_correct"] if stats["mc_correct"] else None
            assert stats["illusion_rate"] == expected
            if point["recipe"] is None:  # no recovery probe runs on the dense model
                assert stats["demoted"] is None and stats["erased"] is None and stats["pruning_induced"] == 0
            else:
                assert stats["demoted"] + stats["erased"] == stats["pruning_induced"]  # --recovery induced
                assert stats["demoted"] + stats["erased"] + stats["not_probed"] == stats["recognition_only"]


def test_sweep_prunes_at_each_sparsity_and_reports_progress(swept):
    _code, err = swept["first"]
    assert "sparsity 0.3 (1/2): wanda:0.3" in err and "sparsity 0.6 (2/2): wanda:0.6" in err
    assert "sparsity 0.3: pruning" in err and "sparsity 0.6: pruning" in err
    assert "sparsity 0.3: probing 6 items on the reference" in err
    assert "sparsity 0.6: reference: 6 results from the store, 0 to compute" in err  # the dense side once
    pruned = sorted(p.name for p in (swept["root"] / "cache" / "pruned").iterdir() if p.is_dir())
    assert [name.split("-")[1:3] for name in pruned] == [["wanda", "0.3"], ["wanda", "0.6"]]


def test_dense_point_equals_a_direct_probe_of_the_unpruned_model(swept, tiny_model):
    from illusion.sources import load_items
    from illusion.probes import ProbeConfig, probe

    items = load_items(str(swept["data"]))
    results = probe(tiny_model, items, ProbeConfig())
    dense = swept["record"]["points"][0]
    for lang, stats in dense["languages"].items():
        mine = [r for r in results if r.lang == lang]
        assert stats["mc_correct"] == sum(r.mc_correct for r in mine)
        assert stats["gen_correct"] == sum(r.gen_correct for r in mine)
        assert stats["recognition_only"] == sum(r.recognition_only for r in mine)
        ranks = sorted(r.gold_rank for r in mine)
        assert stats["median_gold_rank"] == ranks[len(ranks) // 2]  # three items: the middle one


def test_a_rerun_computes_nothing(swept):
    code, err = swept["again"]
    assert code == 0, err
    for tag in ("sparsity 0.3", "sparsity 0.6"):
        assert f"{tag}: reference: 6 results from the store, 0 to compute" in err
        assert f"{tag}: candidate: 6 results from the store, 0 to compute" in err
    assert "probing" not in err and "pruning" not in err and "loading" not in err
    again = json.loads((swept["root"] / "again" / "sweep.json").read_text(encoding="utf-8"))
    assert again == swept["record"]


def test_html_and_svg_hold_the_charts_and_escape_a_hostile_language(swept):
    out = swept["root"] / "out"
    page = (out / "sweep.html").read_text(encoding="utf-8")
    figure = (out / "sweep.svg").read_text(encoding="utf-8")
    assert 'http-equiv="Content-Security-Policy"' in page and "default-src &#x27;none&#x27;" in page
    assert "<script" not in page and "http://" not in page.replace('xmlns="http://www.w3.org/2000/svg"', "")
    # overall, illusion by language, one per language
    assert page.count("<svg") == 2 + 2 and page.count("<polyline") >= 3 * 3
    for text in (page, figure):
        assert "<img" not in text and "&lt;img src=x onerror=alert(1)&gt;" in text
        for name in ("MC accuracy", "generation accuracy", "illusion rate"):
            assert name in text
    root = ET.fromstring(figure)  # a well-formed standalone SVG
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    assert len(root.findall(".//{http://www.w3.org/2000/svg}svg")) == 1 + 2  # overall, then one per language


@pytest.mark.parametrize("sparsities, message", [
    ("0.5,1.5", "--sparsities 'wanda:1.5': sparsity must be in (0, 1)"),
    ("0,0.5", "--sparsities 'wanda:0': sparsity must be in (0, 1)"),
    ("half", "--sparsities 'wanda:half': sparsity 'half' is not a number"),
    ("0.5,0.50", "--sparsities '0.5,0.50' lists 0.50 twice"),
    ("0.3,,0.5", "--sparsities '0.3,,0.5' has an empty entry"),
    (" ", "--sparsities ' ' is empty"),
])
def test_bad_sparsities_give_one_clear_error_before_any_work(tiny_dir, tmp_path, sparsities, message):
    code, err = sweep_cli("--model", str(tiny_dir), "--sparsities", sparsities, "--out", str(tmp_path / "out"))
    assert code == 2
    assert err.startswith("error: ") and err.count("\n") == 1 and message in err
    assert not (tmp_path / "out").exists()


def test_bad_model_and_unwritable_out_give_one_clear_error(tiny_dir, tmp_path):
    code, err = sweep_cli("--model", str(tmp_path / "nowhere"), "--out", str(tmp_path / "out"))
    assert code == 2 and err.startswith("error: model spec") and err.count("\n") == 1
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    code, err = sweep_cli("--model", str(tiny_dir), "--out", str(blocker / "out"))
    assert code == 2 and err.startswith(f"error: --out '{blocker / 'out'}': cannot write there")


@given(st.lists(st.integers(1, 999), min_size=1, max_size=8, unique=True))
def test_parse_sparsities_sorts_distinct_fractions(thousandths):
    text = ",".join(str(n / 1000) for n in thousandths)
    assert parse_sparsities(text, "magnitude") == tuple(sorted(n / 1000 for n in thousandths))


@given(st.one_of(st.floats(max_value=0), st.floats(min_value=1), st.just(float("nan"))))
def test_parse_sparsities_rejects_values_outside_the_open_unit_interval(value):
    with pytest.raises(IllusionError, match="--sparsities"):
        parse_sparsities(f"0.5,{value!r}", "wanda")


def test_svg_skips_undefined_illusion_rates():
    """A language with no MC-correct item has no illusion-rate point, and nothing breaks."""
    def stats(mc: int, gen: int) -> dict:
        ro = mc - min(mc, gen)
        return {"items": 4, "mc_correct": mc, "gen_correct": gen, "recognition_only": ro,
                "mc_accuracy": mc / 4, "gen_accuracy": gen / 4, "illusion_rate": ro / mc if mc else None}

    record = {"config": {"model": "m", "method": "wanda", "limit_per_lang": 4, "dataset": "d"}, "points": [
        {"sparsity": 0.0, "overall": stats(2, 2), "languages": {"xx": stats(2, 2)}},
        {"sparsity": 0.5, "overall": stats(0, 0), "languages": {"xx": stats(0, 0)}},
    ]}
    root = ET.fromstring(render_svg(record))
    panel = root.findall(".//{http://www.w3.org/2000/svg}svg")[1]  # after the overall chart
    titles = [t.text for t in panel.iter("{http://www.w3.org/2000/svg}title")]
    assert sorted(titles) == sorted(["MC accuracy: 0, 0.5", "MC accuracy: 0.5, 0", "generation accuracy: 0, 0.5",
                                     "generation accuracy: 0.5, 0", "illusion rate: 0, 0"])
