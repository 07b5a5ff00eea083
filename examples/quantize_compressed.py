"""Quantize a dense Hugging Face checkpoint into a compressed-tensors checkpoint, as llm-compressor's
``QuantizationModifier`` does without GPTQ: round-to-nearest with min-max weight scales, written in
the format vLLM and transformers load (``quantization_config`` in config.json).

    python examples/quantize_compressed.py DENSE_DIR OUT_DIR --scheme W4A16

Needs only the ``compressed-tensors`` package (``pip install 'benchmark-illusion[compressed]'``), no
llm-compressor and no GPU. Schemes and the format each is written in:

    W4A16, W8A16  int weights in groups (group size 128), ``pack-quantized`` (int32-packed)
    W8A8          int8 weights per channel, int8 activations per token at run time, ``int-quantized``
                  (``--format naive-quantized`` writes the same values unpacked-naive)
    FP8_DYNAMIC   fp8 (e4m3) weights per channel, fp8 activations per token at run time, ``float-quantized``

Static activation schemes (``FP8``, ``W4AFP8`` with calibrated input scales) need calibration data and
are llm-compressor's job; they are not offered here. ``lm_head`` is left dense, as llm-compressor's
recipes do.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

SCHEMES = {  # scheme -> the compressed-tensors format it is written in by default
    "W4A16": "pack-quantized",
    "W8A16": "pack-quantized",
    "W8A8": "int-quantized",
    "FP8_DYNAMIC": "float-quantized",
}
FORMATS = ("pack-quantized", "int-quantized", "naive-quantized", "float-quantized")


def weight_qparams(weight, args):
    """Min-max scale and zero point of a weight for its scheme's strategy (tensor, channel, group)."""
    from compressed_tensors.quantization.utils import calculate_qparams

    strategy = getattr(args.strategy, "value", args.strategy)
    if strategy == "tensor":
        low, high = weight.amin().reshape(1), weight.amax().reshape(1)
    elif strategy == "channel":
        low, high = weight.amin(1, keepdim=True), weight.amax(1, keepdim=True)
    elif strategy == "group":
        grouped = weight.unflatten(-1, (-1, args.group_size))
        low, high = grouped.amin(-1), grouped.amax(-1)
    else:
        raise ValueError(f"weight strategy {strategy!r} is not supported by this script; use a W*A16, W8A8 or "
                         "FP8_DYNAMIC scheme")
    return calculate_qparams(low, high, args)


def _check_groups(model) -> None:
    """Group quantization needs each layer's input size to be a multiple of the group size (the
    packed format has no partial groups): say which layer and which sizes would fit."""
    grouped = {name: (module.weight.shape[1], module.quantization_scheme.weights.group_size)
               for name, module in model.named_modules()
               if getattr(getattr(module, "quantization_scheme", None), "weights", None) is not None
               and module.quantization_scheme.weights.group_size}
    for name, (columns, group_size) in grouped.items():
        if columns % group_size:
            common = math.gcd(*(c for c, _ in grouped.values()))
            fits = [g for g in (128, 64, 32, 16, 8) if common % g == 0]
            raise SystemExit(f"{name}: {columns} input features are not a multiple of the group size {group_size}; "
                             f"pass --group-size {fits[0] if fits else 'N'} (a divisor of every layer's input size)")


def quantize_checkpoint(dense: Path, out: Path, *, scheme: str = "W4A16", fmt: str | None = None,
                        group_size: int | None = None) -> Path:
    """Write ``dense`` quantized with ``scheme`` to ``out`` (config.json, safetensors, tokenizer)."""
    import torch
    from compressed_tensors.compressors import ModelCompressor
    from compressed_tensors.quantization import (QuantizationConfig, QuantizationStatus, apply_quantization_config,
                                                 preset_name_to_scheme)
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if scheme not in SCHEMES:
        raise SystemExit(f"--scheme {scheme!r}: choose one of {', '.join(SCHEMES)}")
    model = AutoModelForCausalLM.from_pretrained(dense, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(dense)
    quant_scheme = preset_name_to_scheme(scheme, ["Linear"])
    if group_size is not None and quant_scheme.weights.group_size is not None:
        quant_scheme.weights.group_size = group_size
    config = QuantizationConfig(config_groups={"group_0": quant_scheme}, ignore=["lm_head"],
                                quantization_status=QuantizationStatus.INITIALIZED)
    apply_quantization_config(model, config, show_progress=False)
    _check_groups(model)
    with torch.no_grad():
        for module in model.modules():
            args = getattr(getattr(module, "quantization_scheme", None), "weights", None)
            if args is None:
                continue
            scale, zero_point = weight_qparams(module.weight.float(), args)
            module.weight_scale.copy_(scale.reshape(module.weight_scale.shape))
            if hasattr(module, "weight_zero_point"):
                module.weight_zero_point.copy_(zero_point.reshape(module.weight_zero_point.shape))
            module.quantization_status = QuantizationStatus.FROZEN
    compressor = ModelCompressor.from_pretrained_model(model, quantization_format=fmt or SCHEMES[scheme])
    compressor.compress_model(model)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    compressor.update_config(str(out))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("dense", type=Path, help="dense checkpoint directory (e.g. from python -m illusion export)")
    parser.add_argument("out", type=Path, help="directory to write the compressed-tensors checkpoint to")
    parser.add_argument("--scheme", default="W4A16", choices=sorted(SCHEMES))
    parser.add_argument("--format", dest="fmt", choices=FORMATS, help="default: the scheme's usual format")
    parser.add_argument("--group-size", type=int, help="weight group size of W4A16/W8A16 (default 128)")
    args = parser.parse_args()
    if args.out.exists() and any(args.out.iterdir()):
        raise SystemExit(f"{args.out} is not empty; give a new directory")
    quantize_checkpoint(args.dense, args.out, scheme=args.scheme, fmt=args.fmt, group_size=args.group_size)
    quant = json.loads((args.out / "config.json").read_text())["quantization_config"]
    print(f"wrote {args.out}: {args.scheme}, format {quant['format']}")


if __name__ == "__main__":
    main()
