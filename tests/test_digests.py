"""The digest memo: a file is hashed once, hashed again when replaced, and kept under concurrency."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from illusion import digests


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("ILLUSION_CACHE", str(tmp_path / "cache"))


def sha256(data: bytes) -> str:
    import hashlib

    return hashlib.sha256(data).hexdigest()


def test_a_file_replaced_by_one_of_the_same_size_and_mtime_is_hashed_again(tmp_path):
    weights = tmp_path / "model.safetensors"
    weights.write_bytes(b"a" * 1000)
    assert digests.file_digest(weights) == sha256(b"a" * 1000)
    before = weights.stat()
    copy = tmp_path / "copy.safetensors"
    copy.write_bytes(b"b" * 1000)  # another file: same size, other content, its own inode
    os.utime(copy, ns=(before.st_atime_ns, before.st_mtime_ns))
    os.replace(copy, weights)
    after = weights.stat()
    assert (after.st_size, after.st_mtime_ns) == (before.st_size, before.st_mtime_ns) and after.st_ino != before.st_ino
    assert digests.file_digest(weights) == sha256(b"b" * 1000)


# Hashes one file; both children wait for each other (a file barrier) once they have read the memo
# and before they write it, so without the lock each writes back a memo without the other's entry.
BARRIER_HASH = """
import hashlib, sys, time
from pathlib import Path
from illusion import digests

path, barrier, me = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]

class Hashlib:
    @staticmethod
    def sha256(*args):
        (barrier / me).touch()
        deadline = time.monotonic() + 60
        while len(list(barrier.iterdir())) < 2:
            assert time.monotonic() < deadline, "the other process never reached the barrier"
            time.sleep(0.01)
        return hashlib.sha256(*args)

digests.hashlib = Hashlib
print(digests.file_digest(path))
"""


def test_two_processes_hashing_at_once_keep_both_memo_entries(tmp_path, monkeypatch):
    barrier = tmp_path / "barrier"
    barrier.mkdir()
    files = [tmp_path / "a.safetensors", tmp_path / "b.safetensors"]
    for number, path in enumerate(files):
        path.write_bytes(bytes([number]) * 100)
    children = [subprocess.Popen([sys.executable, "-c", BARRIER_HASH, str(path), str(barrier), path.stem],
                                 stdout=subprocess.PIPE, text=True) for path in files]
    outputs = [child.communicate(timeout=120)[0].strip() for child in children]
    assert [child.returncode for child in children] == [0, 0]
    assert outputs == [sha256(path.read_bytes()) for path in files]

    class NoHashing:  # both digests must now come from the memo
        @staticmethod
        def sha256(*args):
            raise AssertionError("hashed again: the memo lost this file's entry")

    monkeypatch.setattr(digests, "hashlib", NoHashing)
    assert [digests.file_digest(path) for path in files] == outputs
