"""Crash leftovers of atomic writes and staged checkpoints: a killed process's are removed by the
next write, a live one's are kept, a failed save leaves nothing."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest

from illusion import models
from illusion.files import write_atomic


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("ILLUSION_CACHE", str(tmp_path / "cache"))


STUCK_SAVE = """
import sys, time
from pathlib import Path
from illusion import models

class Stuck:  # saves part of a checkpoint, says so, then hangs until killed
    def save_pretrained(self, directory, **kwargs):
        (Path(directory) / "owner.txt").write_text(sys.argv[2])
        print("staged", flush=True)
        time.sleep(600)

models.save_checkpoint(Stuck(), None, Path(sys.argv[1]))
"""
STUCK_WRITE = """
import os, sys, time
from pathlib import Path
from illusion import files

def stuck_replace(source, target):  # the temp file is written; hang before the rename
    print("written", flush=True)
    time.sleep(600)

os.replace = stuck_replace
files.write_atomic(Path(sys.argv[1]), sys.argv[2].encode())
"""


class Quick:
    """A model or tokenizer stand-in whose save writes one small file."""

    def __init__(self, name: str):
        self.name = name

    def save_pretrained(self, directory, **kwargs):
        (Path(directory) / self.name).write_text("{}")


@pytest.fixture
def stuck():
    """Start children that hang in the middle of a write (after it has begun): ``start(script, *args)``."""
    children = []

    def start(script: str, *args: str) -> subprocess.Popen:
        child = subprocess.Popen([sys.executable, "-c", script, *args], stdout=subprocess.PIPE, text=True)
        children.append(child)
        assert child.stdout.readline().strip() in ("staged", "written")  # now it is mid-write
        return child

    yield start
    for child in children:
        child.kill()
        child.wait()


def kill_9(child: subprocess.Popen) -> None:
    child.send_signal(signal.SIGKILL)
    child.wait()  # reaped: its pid is dead now


def leftovers(root: Path, name: str) -> dict[str, list[Path]]:
    """Files named ``name`` anywhere under ``root``, grouped by their content (the writer's label)."""
    found: dict[str, list[Path]] = {}
    for path in root.rglob(name):
        found.setdefault(path.read_text(), []).append(path)
    return found


def test_killed_checkpoint_save_is_cleared_by_the_next_save_but_a_live_one_is_kept(tmp_path, stuck):
    pruned = tmp_path / "cache" / "pruned"
    killed = stuck(STUCK_SAVE, str(pruned / "a"), "killed")
    stuck(STUCK_SAVE, str(pruned / "b"), "alive")
    kill_9(killed)
    assert set(leftovers(pruned, "owner.txt")) == {"killed", "alive"}  # the kill left its staging behind
    models.save_checkpoint(Quick("config.json"), Quick("tokenizer.json"), pruned / "c")
    assert set(leftovers(pruned, "owner.txt")) == {"alive"}
    assert not (pruned / "a").exists() and (pruned / "c" / "config.json").is_file()


def test_killed_report_write_is_cleared_by_the_next_write_but_a_live_one_is_kept(tmp_path, stuck):
    report = tmp_path / "out" / "report.html"
    killed = stuck(STUCK_WRITE, str(report), "killed")
    stuck(STUCK_WRITE, str(report), "alive")
    kill_9(killed)
    assert sorted(p.read_text() for p in report.parent.iterdir()) == ["alive", "killed"]
    other = tmp_path / "out" / "report.json"
    write_atomic(other, b"{}")  # another file's write leaves this file's temp files alone
    assert sorted(p.read_text() for p in report.parent.iterdir()) == ["alive", "killed", "{}"]
    write_atomic(report, b"final")
    assert sorted(p.read_text() for p in report.parent.iterdir()) == ["alive", "final", "{}"]
    assert report.read_text() == "final"


def test_a_failed_save_leaves_no_staging(tmp_path):
    class Broken:
        def save_pretrained(self, directory, **kwargs):
            (Path(directory) / "config.json").write_text("{}")
            raise OSError(28, "No space left on device")

    with pytest.raises(OSError, match="No space left"):
        models.save_checkpoint(Broken(), Quick("tokenizer.json"), tmp_path / "pruned" / "x")
    assert list((tmp_path / "pruned").iterdir()) == []
