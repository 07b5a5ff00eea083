"""Shared fixtures: tiny random Llama checkpoints, saved and reloaded through from_pretrained;
and the isolation of every test from the user's own illusion cache and home directory."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# pytester's in-process runs remove the modules first imported during the run when it ends, but
# torch's C++ operator registrations survive that: a later re-import of torch.distributed (pulled
# in by transformers' model classes) fails with "Only a single TORCH_LIBRARY can be used". Import
# the model stack once, here, so an in-process run never imports it first.
import torch.distributed.tensor  # noqa: F401,E402
from transformers import AutoModelForCausalLM, GenerationMixin, LlamaForCausalLM  # noqa: F401,E402

from cache_guard import CacheGuard
from tiny import build_model_dir


def _share_the_cores() -> None:
    """Under ``make test`` (-n 2) each xdist worker takes its share of the cores, as the plugin's own
    workers do: two workers of two threads each on two cores spin against each other. The share goes
    to the processes a test starts too (pytester subprocess runs), through OMP_NUM_THREADS."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if workers > 1:
        share = max(1, (os.cpu_count() or 1) // workers)
        torch.set_num_threads(share)
        os.environ.setdefault("OMP_NUM_THREADS", str(share))


_share_the_cores()

pytest_plugins = ["pytester"]

# The user's caches, read before any fixture points HOME or ILLUSION_CACHE elsewhere. No test may
# create or change anything under them; the session fails if one does (cache_guard.py).
USER_CACHES = [Path.home() / ".cache" / "illusion", *filter(None, [os.environ.get("ILLUSION_CACHE")])]


def pytest_configure(config: pytest.Config) -> None:
    if not hasattr(config, "workerinput"):  # the xdist controller (or a plain run) checks once, at the end
        config.pluginmanager.register(CacheGuard([Path(p).expanduser().absolute() for p in USER_CACHES]),
                                      "illusion-user-cache-guard")


# The longest test (the make-demo run, most of `make test`'s wall time) starts first, so that under
# xdist (--dist worksteal, Makefile) the other worker runs everything else meanwhile, instead of
# waiting for it at the end.
LONGEST_FIRST = ("test_make_demo_report_in_chromium",)


def pytest_collection_modifyitems(items: list) -> None:
    items.sort(key=lambda item: getattr(item, "originalname", item.name) not in LONGEST_FIRST)


@pytest.fixture(scope="session", autouse=True)
def isolated_home(tmp_path_factory):
    """HOME and ILLUSION_CACHE in a temporary directory for the whole session, session fixtures included
    (the tiny model's loader writes file digests to the cache), and for every subprocess the tests start."""
    root = tmp_path_factory.mktemp("isolated")
    (root / "home").mkdir()
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HOME", str(root / "home"))
        patch.setenv("ILLUSION_CACHE", str(root / "session-cache"))
        yield root


@pytest.fixture(autouse=True)
def private_cache(tmp_path_factory, monkeypatch) -> Path:
    """Each test starts with its own empty ILLUSION_CACHE (tests that share one set it themselves)."""
    cache = tmp_path_factory.mktemp("cache") / "illusion"
    monkeypatch.setenv("ILLUSION_CACHE", str(cache))
    return cache


@pytest.fixture(scope="session")
def shared_cache(tmp_path_factory) -> Path:
    """One ILLUSION_CACHE per test session for the expensive artefacts (the converted SmolLM2, the
    pruned Wanda 50% model), shared by the session's xdist workers, whose own temporary directories
    sit side by side under the session's: whichever worker needs it first converts SmolLM2 under the
    lock, the other waits and reuses it. Tests that check cache behaviour use their own cache."""
    from filelock import FileLock

    from illusion.models import converted_gguf_dir, parse_spec

    base = tmp_path_factory.getbasetemp()
    root = (base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base) / "illusion-shared-cache"
    with FileLock(str(root) + ".lock"), pytest.MonkeyPatch.context() as patch:
        patch.setenv("ILLUSION_CACHE", str(root))
        converted_gguf_dir(parse_spec("smollm2-135m"))
    return root


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory):
    return build_model_dir(tmp_path_factory.mktemp("tiny") / "model", seed=1)


@pytest.fixture(scope="session")
def tiny_model(tiny_dir):
    from illusion.models import load_model, parse_spec

    return load_model(parse_spec(str(tiny_dir)), dtype="float32", device="cpu")
