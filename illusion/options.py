"""The ``--illusion-*`` options: their table, how a value is read, and their validation.

Every option is also an ini key ``illusion_<name>``. A value comes from the command line first,
then the ini file (a relative path there is relative to the ini file), then the default.
:func:`run_config` reads and checks them all once, so a bad value is a usage error before
anything is collected or loaded.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from .errors import ConfigError

if TYPE_CHECKING:
    from .session import RunConfig

# option name -> (type, default, help); each is also an ini key ``illusion_<name>``
OPTIONS: dict[str, tuple[type, Any, str]] = {
    "model": (str, "smollm2-135m", "candidate model: smollm2-135m, a checkpoint dir, a .gguf file or org/name"),
    "reference": (str, None, "dense reference model spec (default: the model before pruning)"),
    "prune": (str, None, "prune the reference in-process: METHOD:SPARSITY or METHOD:N:M, e.g. wanda:0.5"),
    "dataset": (str, None, "a directory of <lang>.jsonl files, a .jsonl/.csv/.parquet file, mkqa:PATH_OR_ID or "
                           "hf:ID[:SPLIT] (default: the shipped fixtures/qa)"),
    "langs": (str, None, "comma-separated languages, e.g. en,fr (default: all in the dataset)"),
    "limit-per-lang": (int, None, "the same N seeded ids in every language"),
    "report": (str, None, "directory to write report.json into"),
    "rank-tolerance": (int, 0, "gold-rank worsening a snapshot test allows: K positions or K x 10%% of the "
                               "baseline rank, whichever is larger"),
    "snapshot-name": (str, None, "pin the gold-rank baseline set, e.g. release (default: one set per model, "
                                 "recipe, dataset, dtype and prompt format)"),
    "alpha": (float, 0.05, "significance level of the per-language McNemar gate"),
    "max-illusion-rate": (float, None, "fail a language whose illusion rate exceeds this (0..1)"),
    "recovery": (str, "induced", "which recognition-only items the recovery probes (beam, sampling, one-shot) "
                                 "run on: induced (the pruning-induced ones, whose tests fail), all, or off"),
    "device": (str, "auto", "auto, cpu, cuda or cuda:N"),
    "dtype": (str, "auto", "auto (bf16 where fast, else fp32), float32, bfloat16 or float16"),
    "device-map": (str, None, "auto, balanced or sequential: load through accelerate's big-model inference, "
                              "sharded over GPUs and offloaded to CPU or disk (default: whole, on --illusion-device)"),
    "max-memory": (str, None, "per-device budget for --illusion-device-map, e.g. 0=70GiB,1=70GiB,cpu=200GiB "
                              "(the rest goes to disk under the illusion cache)"),
    "batch-size": (int, 64, "questions per forward pass (in float32 no verdict, rank or output depends on it; "
                               "in bf16/fp16 numbers may, so it is part of the results-store key there)"),
    "seed": (int, 0, "seed for the subset choice and sampling probes"),
    "prompt-format": (str, "auto", "auto (chat template if the model has one), chat or plain"),
    "max-new-tokens": (int, 24, "greedy answer length limit (stops earlier at newline/EOS)"),
    "calibration-langs": (str, None, "calibration text languages for wanda/sparsegpt, e.g. fr (default: all shipped)"),
    "calibration-samples": (int, 64, "calibration windows for wanda/sparsegpt"),
    "calibration-seqlen": (int, 256, "tokens per calibration window"),
    "calibration-seed": (int, 0, "seed for the calibration windows of wanda/sparsegpt (--illusion-seed does not "
                                 "change the pruned model)"),
}
FLAGS = {"trust-remote-code": "allow model repositories to run their own code (off by default)",
         "no-cache": "neither read nor write the results store (recompute everything)"}
ZERO_ALLOWED = ("rank-tolerance", "seed", "calibration-seed")  # whole-number options that may be 0
INI_PATHS = ("model", "reference", "dataset", "report")  # path options an ini file may give relative


def dest(name: str) -> str:
    """The option's attribute and ini key: ``batch-size`` -> ``illusion_batch_size``."""
    return "illusion_" + name.replace("-", "_")


def add_options(parser: pytest.Parser) -> None:
    """Every option and flag, in one group, each also an ini key."""
    group = parser.getgroup("illusion", "benchmark-illusion: MC-correct must imply generation-correct")
    for name, (_kind, default, help_text) in OPTIONS.items():
        group.addoption(f"--illusion-{name}", dest=dest(name), default=None, help=f"{help_text} [default: {default}]")
        parser.addini(dest(name), help_text, default=None)
    for name, help_text in FLAGS.items():
        group.addoption(f"--illusion-{name}", dest=dest(name), action="store_true", default=False, help=help_text)
        parser.addini(dest(name), help_text, type="bool", default=False)


def read_option(config: pytest.Config, name: str) -> Any:
    """Command line first, then the ini key, then the default; typed and validated."""
    value = config.getoption(dest(name))
    if value is None:
        value = config.getini(dest(name))
        if name in INI_PATHS and value and config.inipath is not None:
            value = ini_path(name, str(value).strip(), config.inipath.parent)
    return typed_value(name, value)


def read_flag(config: pytest.Config, name: str) -> bool:
    """A flag is on when given on the command line or set in the ini file."""
    return bool(config.getoption(dest(name)) or config.getini(dest(name)))


def typed_value(name: str, value: Any) -> Any:
    """An option's raw text as its type (the default when unset); a bad value names the option."""
    kind, default, _ = OPTIONS[name]
    if value in (None, ""):
        return default
    if kind is float:
        try:
            return float(value)
        except ValueError:
            raise ConfigError(f"--illusion-{name} {value!r}: expected a number") from None
    if kind is int:
        try:
            number = int(value)
        except ValueError:
            raise ConfigError(f"--illusion-{name} {value!r}: expected a whole number") from None
        zero_ok = name in ZERO_ALLOWED
        if number < (0 if zero_ok else 1):
            raise ConfigError(f"--illusion-{name} {number}: must be {'>= 0' if zero_ok else '>= 1'}")
        return number
    return str(value).strip()


def ini_path(name: str, value: str, ini_dir: Path) -> str:
    """A relative path from an ini file, against the ini file's directory (as pytest's own path options).

    The command line's paths stay relative to the current directory. A builtin model name or a hub id
    (``org/name``, which looks like a relative path) is kept unless that path exists next to the ini
    file; ``hf:`` datasets are ids; ``mkqa:PATH`` resolves its path part (a hub id unless it exists);
    a report directory and a plain dataset path always resolve (an error then names the full path).
    """
    from .models import BUILTINS

    prefix = "mkqa:" if name == "dataset" and value.startswith("mkqa:") else ""
    path = Path(value[len(prefix):]).expanduser()
    if value in BUILTINS or value.startswith("hf:") or path.is_absolute():
        return value
    resolved = ini_dir / path
    always = name == "report" or (name == "dataset" and not prefix)
    return prefix + str(resolved) if always or resolved.exists() else value


def split_list(text: str | None, option: str) -> tuple[str, ...] | None:
    """``en, fr`` -> ("en", "fr"); None when the option is unset. A value that names no language
    (``,``) is refused: read as unset, it would silently mean every language."""
    if not text:
        return None
    values = tuple(x.strip() for x in text.split(",") if x.strip())
    if not values:
        raise ConfigError(f"--illusion-{option} {text!r}: no language given; list languages like en,fr "
                          "or leave the option out for all of them")
    return values


def run_config(config: pytest.Config) -> RunConfig:
    """Every option read and checked once: a bad recipe, format, name or gate number is a
    ConfigError before anything loads."""
    from .session import RunConfig

    langs = read_option(config, "langs")
    calibration_langs = read_option(config, "calibration-langs")
    prune = read_option(config, "prune")
    if prune:
        from .prune import parse_recipe

        parse_recipe(prune)  # a bad recipe is a usage error before anything loads
    prompt_format = read_option(config, "prompt-format")
    if prompt_format not in ("auto", "chat", "plain"):
        raise ConfigError(f"--illusion-prompt-format {prompt_format!r}: choose auto, chat or plain")
    snapshot_name = read_option(config, "snapshot-name")
    if snapshot_name:
        from .snapshots import check_set_name

        try:
            snapshot_name = check_set_name(snapshot_name)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
    from .models import check_placement

    max_memory = read_option(config, "max-memory")
    device_map = check_placement(read_option(config, "device-map"), max_memory)
    alpha, max_rate = read_option(config, "alpha"), read_option(config, "max-illusion-rate")
    from .verdict import check_gate_options, check_recovery_scope

    check_gate_options(alpha, max_rate)
    recovery = check_recovery_scope(read_option(config, "recovery"))
    return RunConfig(
        model=read_option(config, "model"), reference=read_option(config, "reference"), prune=prune,
        dataset=read_option(config, "dataset"),
        langs=split_list(langs, "langs"),
        limit_per_lang=read_option(config, "limit-per-lang"), report_dir=read_option(config, "report"),
        rank_tolerance=read_option(config, "rank-tolerance"), device=read_option(config, "device"),
        dtype=read_option(config, "dtype"), batch_size=read_option(config, "batch-size"),
        device_map=device_map, max_memory=max_memory,
        seed=read_option(config, "seed"),
        trust_remote_code=read_flag(config, "trust-remote-code"), prompt_format=prompt_format,
        max_new_tokens=read_option(config, "max-new-tokens"),
        calibration_langs=split_list(calibration_langs, "calibration-langs"),
        calibration_samples=read_option(config, "calibration-samples"),
        calibration_seqlen=read_option(config, "calibration-seqlen"),
        calibration_seed=read_option(config, "calibration-seed"),
        use_store=not read_flag(config, "no-cache"),
        snapshot_name=snapshot_name, alpha=alpha, max_illusion_rate=max_rate, recovery=recovery,
    )
