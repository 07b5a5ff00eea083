"""Tiny models and datasets built inside the tests (random weights, real HF save/load, no network)."""

from __future__ import annotations

import json
from pathlib import Path

WORDS = ("river mountain city stone light paper garden window music water forest silver bread "
         "castle island bridge candle cloud horse apple summer winter violet copper marble "
         "rivière montagne ville pierre lumière papier jardin fenêtre musique forêt argent pain "
         "château île pont bougie nuage cheval pomme été hiver cuivre marbre").split()
CHAT_TEMPLATE = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
                 "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")


def build_tokenizer(chat: bool = True):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=420, special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    text = [" ".join(WORDS), "What is the name of the old river?\nQuel est le nom de la vieille ville ?\n"] * 20
    tok.train_from_iterator(text, trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>",
                                   bos_token="<|im_start|>")
    if chat:
        fast.chat_template = CHAT_TEMPLATE
    return fast


def build_model_dir(path: Path, *, seed: int, chat: bool = True) -> Path:
    """A 2-layer Llama with random (but peaked) weights, saved as a standard checkpoint."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    tokenizer = build_tokenizer(chat)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                         initializer_range=0.3, tie_word_embeddings=False,
                         eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
                         bos_token_id=tokenizer.bos_token_id)
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config).eval()
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.save_pretrained(path, safe_serialization=True)
    tokenizer.save_pretrained(path)
    return path


def write_items(directory: Path, items: list[dict]) -> Path:
    """Write items grouped into ``<lang>.jsonl`` files."""
    directory.mkdir(parents=True, exist_ok=True)
    by_lang: dict[str, list[dict]] = {}
    for item in items:
        by_lang.setdefault(item["lang"], []).append(item)
    for lang, rows in by_lang.items():
        (directory / f"{lang}.jsonl").write_text(
            "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows), encoding="utf-8")
    return directory


def item(id: str, lang: str, question: str, answer: str, distractors, aliases=()) -> dict:
    return {"id": id, "lang": lang, "question": question, "answer": answer, "aliases": list(aliases),
            "distractors": list(distractors), "type": "entity"}


def write_gguf(model_dir: Path, path: Path, qtype: str = "F32") -> Path:
    """A GGUF of a tiny Llama checkpoint, laid out as llama.cpp's converter writes one (GGUF tensor
    names, q/k rows permuted, the byte-level BPE vocabulary as ``gpt2``). ``qtype`` (F32, Q8_0, Q4_0,
    Q4_1, Q5_0, Q5_1: what the ``gguf`` package can quantize) is applied to the matrices, with
    norms kept in float32, as llama.cpp's quantize does."""
    import gguf
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype="float32")
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    config = model.config
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_context_length(config.max_position_embeddings)
    writer.add_embedding_length(config.hidden_size)
    writer.add_block_count(config.num_hidden_layers)
    writer.add_feed_forward_length(config.intermediate_size)
    writer.add_head_count(config.num_attention_heads)
    writer.add_head_count_kv(config.num_key_value_heads)
    writer.add_layer_norm_rms_eps(config.rms_norm_eps)
    writer.add_rope_freq_base(config.rope_parameters["rope_theta"] if getattr(config, "rope_parameters", None)
                              else config.rope_theta)
    writer.add_rope_dimension_count(config.hidden_size // config.num_attention_heads)
    writer.add_vocab_size(config.vocab_size)
    quant = gguf.GGMLQuantizationType[qtype]
    writer.add_file_type(gguf.LlamaFileType.ALL_F32 if qtype == "F32" else gguf.LlamaFileType[f"MOSTLY_{qtype}"])
    vocab = sorted(tokenizer.get_vocab().items(), key=lambda pair: pair[1])
    special = set(tokenizer.all_special_tokens)
    writer.add_tokenizer_model("gpt2")
    writer.add_token_list([token for token, _ in vocab])
    writer.add_token_types([gguf.TokenType.CONTROL if token in special else gguf.TokenType.NORMAL
                            for token, _ in vocab])
    merges = json.loads(tokenizer.backend_tokenizer.to_str())["model"]["merges"]
    writer.add_token_merges([" ".join(m) if isinstance(m, list) else m for m in merges])
    writer.add_bos_token_id(tokenizer.bos_token_id)
    writer.add_eos_token_id(tokenizer.eos_token_id)
    writer.add_pad_token_id(tokenizer.pad_token_id)
    if tokenizer.chat_template:
        writer.add_chat_template(tokenizer.chat_template)
    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.LLAMA, config.num_hidden_layers)
    for name, tensor in model.state_dict().items():
        data = tensor.numpy()
        heads = {"q_proj": config.num_attention_heads, "k_proj": config.num_key_value_heads}
        for projection, n_head in heads.items():
            if f".{projection}." in name:  # llama.cpp's permutation, which the GGUF loader undoes
                data = data.reshape(n_head, 2, data.shape[0] // n_head // 2, *data.shape[1:]).swapaxes(1, 2)
                data = data.reshape(tensor.shape)
        gguf_name = names.get_name(name, try_suffixes=(".weight", ".bias"))
        if data.ndim == 2 and qtype != "F32":
            writer.add_tensor(gguf_name, gguf.quants.quantize(data, quant), raw_dtype=quant)
        else:
            writer.add_tensor(gguf_name, data)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path
