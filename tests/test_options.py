"""The ``--illusion-*`` options: reading, typing and validation (Hypothesis), ini-relative paths, and
the usage errors a bad value gives through the real plugin (pytester, on the designed world)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from illusion.errors import ConfigError
from illusion.options import FLAGS, OPTIONS, ZERO_ALLOWED, dest, ini_path, read_option, run_config, split_list, typed_value
from suite_world import project, suite, world  # noqa: F401 (fixtures)

langs = st.lists(st.from_regex(r"[a-z]{2,3}(-[A-Z][a-z]{0,3})?", fullmatch=True), min_size=1, max_size=6)
blanks = st.text(alphabet=" \t", max_size=3)
INT_OPTIONS = [name for name, (kind, _, _) in OPTIONS.items() if kind is int]


# --- pure reading rules ----------------------------------------------------------------------------

@given(langs, blanks, blanks)
def test_a_list_splits_on_commas_and_strips_blanks(codes, before, after):
    text = ",".join(f"{before}{code}{after}" for code in codes) + ","  # a trailing comma is harmless
    assert split_list(text, "langs") == tuple(codes)


@given(st.text(alphabet=", \t", min_size=1))
def test_a_list_that_names_no_language_is_refused_not_read_as_all(text):
    with pytest.raises(ConfigError, match=r"--illusion-calibration-langs .*: no language given; list languages"):
        split_list(text, "calibration-langs")


def test_an_unset_list_means_every_language():
    assert split_list(None, "langs") is None and split_list("", "langs") is None


@pytest.mark.parametrize("name", list(OPTIONS))
def test_unset_gives_the_documented_default(name):
    assert typed_value(name, None) == typed_value(name, "") == OPTIONS[name][1]


@given(st.sampled_from(INT_OPTIONS), st.integers(-1000, 1000))
def test_whole_numbers_are_bounded_below_by_one_or_zero(name, number):
    lowest = 0 if name in ZERO_ALLOWED else 1
    if number >= lowest:
        assert typed_value(name, f" {number} ") == number
    else:
        with pytest.raises(ConfigError, match=rf"^--illusion-{name} {number}: must be >= {lowest}$"):
            typed_value(name, str(number))


@pytest.mark.parametrize("name, value, message", [
    ("batch-size", "many", "--illusion-batch-size 'many': expected a whole number"),
    ("seed", "1.5", "--illusion-seed '1.5': expected a whole number"),
    ("alpha", "x", "--illusion-alpha 'x': expected a number"),
])
def test_a_value_of_the_wrong_type_names_the_option(name, value, message):
    with pytest.raises(ConfigError) as info:
        typed_value(name, value)
    assert str(info.value) == message


def test_every_option_and_flag_is_a_command_line_option_and_an_ini_key(pytester):
    lines = [f"{dest(name)} = {'1' if OPTIONS[name][0] is not str else 'x'}" for name in OPTIONS]
    lines += [f"{dest(name)} = true" for name in FLAGS]
    pytester.makeini("[pytest]\n" + "\n".join(lines) + "\n")
    config = pytester.parseconfig()
    for name in OPTIONS:
        assert config.getini(dest(name)) in ("1", "x")
    given_on_line = pytester.parseconfig(*[arg for name in OPTIONS for arg in (f"--illusion-{name}", "2")])
    assert all(read_option(given_on_line, name) in (2, 2.0, "2") for name in OPTIONS)


def test_the_command_line_wins_over_the_ini_file_and_the_ini_file_over_the_default(pytester):
    pytester.makeini("[pytest]\nillusion_batch_size = 8\nillusion_seed = 5\nillusion_no_cache = true\n")
    config = run_config(pytester.parseconfig("--illusion-batch-size", "16"))
    assert (config.batch_size, config.seed, config.max_new_tokens, config.use_store) == (16, 5, 24, False)


@pytest.mark.parametrize("name, value, expected", [
    ("model", "smollm2-135m", "smollm2-135m"),  # a builtin
    ("model", "org/name", "org/name"),  # a hub id: nothing of that name next to the ini file
    ("model", "models/cand", "{ini}/models/cand"),  # exists next to the ini file
    ("reference", "./models/cand", "{ini}/models/cand"),
    ("dataset", "hf:org/set", "hf:org/set"),  # always an id
    ("dataset", "qa", "{ini}/qa"),  # a plain dataset path always resolves, existing or not
    ("dataset", "mkqa:org/mkqa", "mkqa:org/mkqa"),  # a hub id unless the path exists
    ("dataset", "mkqa:models/cand", "mkqa:{ini}/models/cand"),
    ("report", "out", "{ini}/out"),  # a report directory always resolves
    ("report", "/abs/out", "/abs/out"),
])
def test_ini_paths_resolve_against_the_ini_directory_unless_they_are_names(tmp_path, name, value, expected):
    (tmp_path / "models" / "cand").mkdir(parents=True)
    assert ini_path(name, value, tmp_path) == expected.format(ini=tmp_path)


# --- through the plugin: one clear usage error ------------------------------------------------------

@pytest.mark.parametrize("args, message", [
    (("--illusion-batch-size", "0"), "--illusion-batch-size 0: must be >= 1"),
    (("--illusion-batch-size", "many"), "--illusion-batch-size 'many': expected a whole number"),
    (("--illusion-langs", "en,xx"), "--illusion-langs asks for xx"),
    (("--illusion-prompt-format", "json"), "choose auto, chat or plain"),
    (("--illusion-langs", ","), "--illusion-langs ',': no language given"),
    (("--illusion-calibration-langs", ", ,"), "--illusion-calibration-langs ', ,': no language given"),
])
def test_bad_options_are_usage_errors(suite, args, message):
    result = suite(*args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert message in result.stderr.str() + result.stdout.str()


def test_bad_prune_recipe_is_a_usage_error(suite):
    result = suite("--illusion-prune", "wanda:1.5")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "--illusion-prune 'wanda:1.5': sparsity must be in (0, 1)" in result.stderr.str()


# --- relative paths: an ini file's against the ini file's directory, the command line's against the cwd -----

def test_ini_paths_resolve_against_the_ini_files_directory(project, pytester):
    pytester.makeini("[pytest]\nillusion_model = models/cand\nillusion_reference = ./models/ref\n"
                     "illusion_dataset = qa\nillusion_report = out\nillusion_dtype = float32\n")
    result = pytester.runpytest(str(project / "illusion_tests"), "-k", "en-", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=1, failed=1, xfailed=1)  # the designed candidate against its reference
    config = json.loads((project / "out" / "report.json").read_text())["config"]
    assert not (project / "sub" / "out").exists()
    assert Path(config["model"]) == project / "models" / "cand" and Path(config["dataset"]) == project / "qa"


def test_command_line_paths_resolve_against_the_current_directory(project, pytester):
    pytester.makeini("[pytest]\nillusion_model = models/ref\nillusion_report = out\n")  # the command line wins
    result = pytester.runpytest(str(project / "illusion_tests"), "-k", "en-", "-p", "no:cacheprovider",
                                "--illusion-model", "../models/cand", "--illusion-reference", "../models/ref",
                                "--illusion-dataset", "../qa", "--illusion-report", "here",
                                "--illusion-dtype", "float32")
    result.assert_outcomes(passed=1, failed=1, xfailed=1)
    assert (project / "sub" / "here" / "report.json").is_file() and not (project / "out").exists()


def test_ini_mkqa_path_resolves_and_hub_ids_stay_as_given(project, pytester):
    import gzip

    from test_sources import MKQA

    (project / "data").mkdir()
    with gzip.open(project / "data" / "mkqa.jsonl.gz", "wt", encoding="utf-8") as handle:
        handle.write("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in MKQA))
    pytester.makeini("[pytest]\nillusion_model = org/name\nillusion_dataset = mkqa:data/mkqa.jsonl.gz\n")
    collected = pytester.runpytest(str(project / "illusion_tests"), "--collect-only", "-q", "-p", "no:cacheprovider")
    assert collected.ret == pytest.ExitCode.OK, collected.stdout.str()
    assert any("test_mc_implies_generation[en-" in line for line in collected.outlines)
    run = pytester.runpytest(str(project / "illusion_tests"), "-k", "en-", "-p", "no:cacheprovider")
    assert run.ret == pytest.ExitCode.USAGE_ERROR  # offline: the hub id is tried as a hub id, not as a path
    assert "model spec 'org/name': could not download" in run.stdout.str() + run.stderr.str()
