"""Shared fixtures: tiny random Llama checkpoints, saved and reloaded through from_pretrained."""

from __future__ import annotations

import pytest

# pytester's in-process runs remove the modules first imported during the run when it ends, but
# torch's C++ operator registrations survive that: a later re-import of torch.distributed (pulled
# in by transformers' model classes) fails with "Only a single TORCH_LIBRARY can be used". Import
# the model stack once, here, so an in-process run never imports it first.
import torch.distributed.tensor  # noqa: F401,E402
from transformers import AutoModelForCausalLM, GenerationMixin, LlamaForCausalLM  # noqa: F401,E402

from tiny import build_model_dir

pytest_plugins = ["pytester"]


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory):
    return build_model_dir(tmp_path_factory.mktemp("tiny") / "model", seed=1)


@pytest.fixture(scope="session")
def tiny_model(tiny_dir):
    from illusion.models import load_model, parse_spec

    return load_model(parse_spec(str(tiny_dir)), dtype="float32", device="cpu")
