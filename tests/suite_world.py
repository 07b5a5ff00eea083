"""The designed world of the plugin's pytester tests: two tiny random Llamas and a dataset with known
outcomes, and the fixtures that run the shipped suite on it.

The dataset is built by probing both models on a pool of words: for each language one item is a
candidate-only illusion (must FAIL), one is an illusion on both models (must XFAIL) and one is not
an illusion for the candidate (must PASS). A test module imports the fixtures it uses.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from illusion.data import Item
from illusion.matching import mentions
from illusion.models import load_model, parse_spec
from illusion.probes import ProbeConfig, probe
from tiny import WORDS, build_model_dir, item, write_items

SUITE = Path(__file__).resolve().parent.parent / "illusion_tests" / "test_consistency.py"
QUESTIONS = {"en": "What is the name of the old river?", "fr": "Quel est le nom de la vieille ville ?"}


def pool_scores(directory: Path, lang: str, question: str) -> tuple[dict[str, float], str]:
    loaded = load_model(parse_spec(str(directory)), dtype="float32", device="cpu")
    pool = Item(id="pool", lang=lang, question=question, answer=WORDS[0], aliases=(),
                distractors=tuple(WORDS[1:]), type="entity")
    [res] = probe(loaded, [pool], ProbeConfig())
    return dict(zip(res.options, res.mc_scores)), res.generation


def design(lang: str, ref_dir: Path, cand_dir: Path, question: str | None = None) -> list[dict]:
    q = question or QUESTIONS[lang]
    ref, ref_gen = pool_scores(ref_dir, lang, q)
    cand, cand_gen = pool_scores(cand_dir, lang, q)
    words = [w for w in WORDS if not mentions(cand_gen, w, lang) and not mentions(ref_gen, w, lang)]
    by_cand = sorted(words, key=lambda w: -cand[w])

    def pick(want_ref_mc: bool) -> tuple[str, list[str]]:
        for gold in by_cand:
            lower = [w for w in by_cand if cand[w] < cand[gold]]
            beat = [w for w in lower if ref[w] >= ref[gold]]
            under = [w for w in lower if ref[w] < ref[gold]]
            chosen = under[:3] if want_ref_mc else beat[:1] + [w for w in lower if w not in beat[:1]][:2]
            if len(chosen) == 3 and (want_ref_mc or beat):
                return gold, chosen
        raise AssertionError("no design found; enlarge the word pool")

    fail_gold, fail_d = pick(want_ref_mc=False)
    xfail_gold, xfail_d = pick(want_ref_mc=True)
    low = by_cand[-1]  # the candidate's lowest-scoring word as gold: not MC-correct, so no illusion
    return [item("fail", lang, q, fail_gold, fail_d), item("xfail", lang, q, xfail_gold, xfail_d),
            item("pass", lang, q, low, by_cand[:3])]


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("world")
    ref_dir = build_model_dir(root / "ref", seed=1)
    cand_dir = build_model_dir(root / "cand", seed=2)
    data = write_items(root / "qa", design("en", ref_dir, cand_dir) + design("fr", ref_dir, cand_dir))
    return {"ref": ref_dir, "cand": cand_dir, "data": data, "cache": root / "cache"}


@pytest.fixture
def suite(pytester, world, monkeypatch):
    monkeypatch.setenv("ILLUSION_CACHE", str(world["cache"]))
    pytester.makeini("[pytest]\n")  # rootdir = the test dir, so node ids match the contract
    pytester.mkpydir("illusion_tests")
    pytester.path.joinpath("illusion_tests", "test_consistency.py").write_text(SUITE.read_text())
    base = ["--illusion-model", str(world["cand"]), "--illusion-reference", str(world["ref"]),
            "--illusion-dataset", str(world["data"]), "--illusion-dtype", "float32", "-p", "no:cacheprovider"]

    def run(*args: str, subprocess: bool = False):
        runner = pytester.runpytest_subprocess if subprocess else pytester.runpytest
        return runner("illusion_tests", *base, *args)

    def add(name: str) -> None:
        """Add another module of the shipped suite (only test_consistency.py is there by default)."""
        pytester.path.joinpath("illusion_tests", name).write_text((SUITE.parent / name).read_text())

    run.add = add
    return run


@pytest.fixture
def project(pytester, world, monkeypatch):
    """A project root (pytester.path) with the suite, two checkpoints and a dataset; the test runs from root/sub."""
    root = pytester.path
    for side in ("cand", "ref"):
        shutil.copytree(world[side], root / "models" / side)
    shutil.copytree(world["data"], root / "qa")
    pytester.mkpydir("illusion_tests")
    root.joinpath("illusion_tests", "test_consistency.py").write_text(SUITE.read_text())
    monkeypatch.chdir(pytester.mkdir("sub"))
    return root


# hostile text: what must never reach a terminal raw
HOSTILE = "\x1b[2J\x1b]0;TITLE\x07"  # clears the screen and retitles the terminal when printed raw
BIDI = "\u202e"  # right-to-left override: reorders what follows on screen
RAW = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")
