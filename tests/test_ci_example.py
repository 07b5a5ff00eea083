"""examples/github-actions.yml: valid YAML whose install line, options, cache and exit codes are true."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml  # PyYAML: a dependency of transformers

from illusion.options import FLAGS, OPTIONS

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "github-actions.yml"


@pytest.fixture(scope="module")
def workflow() -> dict:
    return yaml.safe_load(EXAMPLE.read_text(encoding="utf-8"))


def steps(workflow: dict) -> dict[str, dict]:
    [job] = workflow["jobs"].values()
    return {step.get("name", step.get("uses")): step for step in job["steps"]}


def test_runs_on_pull_requests_and_on_pushes_to_main(workflow):
    triggers = workflow.get("on", workflow.get(True))  # YAML 1.1 reads a bare `on` key as true
    assert "pull_request" in triggers and triggers["push"]["branches"] == ["main"]


def test_install_line_is_one_pip_can_resolve():
    install = steps(yaml.safe_load(EXAMPLE.read_text(encoding="utf-8")))["Install"]["run"]
    assert '"benchmark-illusion @ git+https://github.com/OWNER/benchmark-illusion"' in install
    assert "OWNER is a placeholder" in install
    assert not re.search(r"pip install benchmark-illusion(\s|$)", install)  # not on PyPI


def test_suite_uses_only_options_the_plugin_has(workflow):
    command = steps(workflow)["Run benchmark-illusion"]["run"]
    used = set(re.findall(r"--illusion-([\w-]+)", command))
    assert used and used <= set(OPTIONS) | set(FLAGS)


def test_cache_is_saved_where_pull_requests_can_restore_it(workflow):
    by_name = steps(workflow)
    restore, save = by_name["Restore cached results"], by_name["Save results"]
    assert restore["uses"].startswith("actions/cache/restore@") and save["uses"].startswith("actions/cache/save@")
    assert restore["with"]["path"] == save["with"]["path"]
    assert save["with"]["key"] == restore["with"]["key"]
    assert all(save["with"]["key"].startswith(prefix) for prefix in restore["with"]["restore-keys"].splitlines())
    assert "github.event_name" not in save.get("if", "")  # saved on main too, which is what PRs restore
    assert "github.event_name == 'pull_request'" in by_name["Comment on the pull request"]["if"]


def test_exit_code_comment_matches_pytest():
    """Every `N = ... (NAME)` in the comment is pytest's ExitCode.NAME, and codes 0 to 4 are all there."""
    text = EXAMPLE.read_text(encoding="utf-8")
    comment = text[text.index("# Keep the suite's verdict"):text.index("- name: Fail on suite failure")]
    comment = " ".join(line.strip().lstrip("#") for line in comment.splitlines())
    claims = re.findall(r"(\d) = [^;]*?\((\w+)\)", comment)
    assert all(pytest.ExitCode[name] == int(code) for code, name in claims), claims
    assert {int(code) for code, _ in claims} >= {0, 1, 2, 3, 4}
    assert ">1" not in comment and "> 1" not in comment
    assert 'exit "${status:-1}"' in text  # the job fails with the suite's own status
