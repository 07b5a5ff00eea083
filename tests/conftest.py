"""Shared fixtures: tiny random Llama checkpoints, saved and reloaded through from_pretrained."""

from __future__ import annotations

import pytest

from tiny import build_model_dir

pytest_plugins = ["pytester"]


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory):
    return build_model_dir(tmp_path_factory.mktemp("tiny") / "model", seed=1)


@pytest.fixture(scope="session")
def tiny_model(tiny_dir):
    from illusion.models import load_model, parse_spec

    return load_model(parse_spec(str(tiny_dir)), dtype="float32", device="cpu")
