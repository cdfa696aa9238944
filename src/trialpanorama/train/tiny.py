"""A tiny Llama-architecture model and a BPE tokenizer trained on the project's own task corpus.

Nothing can be downloaded here, and the tests and demo must exercise the very code that loads an 8B
checkpoint. So the tiny model is a normal Hugging Face folder (config.json, model.safetensors,
tokenizer.json, tokenizer_config.json with the chat template) that ``AutoModelForCausalLM`` and
``AutoTokenizer.from_pretrained(path)`` load like any other.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from trialpanorama.train.data import CHATML_TEMPLATE

SPECIAL_TOKENS = ["<|pad|>", "<|endoftext|>", "<|im_start|>", "<|im_end|>"]
DEFAULT_ARCH = {"hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
                "num_key_value_heads": 2, "intermediate_size": 176, "vocab_size": 2048}


def corpus_from_tables(paths: Iterable[str], limit: int = 20000) -> Iterator[str]:
    """Text of the task tables' messages and answers (small tables: read with delta-rs, no Spark)."""
    from deltalake import DeltaTable

    n = 0
    for path in paths:
        if not (Path(path) / "_delta_log").is_dir():
            continue
        table = DeltaTable(path).to_pyarrow_table(columns=["split", "messages", "answer"])
        for sp, msgs, ans in zip(table.column("split").to_pylist(), table.column("messages").to_pylist(),
                                 table.column("answer").to_pylist(), strict=True):
            if sp != "train":  # the tokenizer must not see test prompts
                continue
            for m in msgs or []:
                yield m["content"]
            if ans:
                yield ans
            n += 1
            if n >= limit:
                return


def train_tokenizer(texts: Iterable[str], vocab_size: int) -> Any:
    """Byte-level BPE (GPT-2/Llama-3 style) with the chat markers as single special tokens."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS, min_frequency=2,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(texts, trainer=trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<|pad|>", eos_token="<|im_end|>",
                                   bos_token="<|endoftext|>", unk_token=None)
    fast.chat_template = CHATML_TEMPLATE
    return fast


def build_tiny_model(out_dir: str | Path, texts: Iterable[str], arch: dict[str, Any] | None = None,
                     max_position_embeddings: int = 2048, seed: int = 0) -> Path:
    """Train the tokenizer, build a random-init LlamaForCausalLM of ``arch``, save both to ``out_dir``."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    arch = {**DEFAULT_ARCH, **(arch or {})}
    out = Path(out_dir)
    tmp = out.with_name(out.name + ".tmp")
    tmp.mkdir(parents=True, exist_ok=True)
    tok = train_tokenizer(texts, int(arch["vocab_size"]))
    cfg = LlamaConfig(
        vocab_size=len(tok), hidden_size=int(arch["hidden_size"]),
        num_hidden_layers=int(arch["num_hidden_layers"]), num_attention_heads=int(arch["num_attention_heads"]),
        num_key_value_heads=int(arch["num_key_value_heads"]), intermediate_size=int(arch["intermediate_size"]),
        max_position_embeddings=max_position_embeddings, tie_word_embeddings=True,
        pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(cfg)
    model.save_pretrained(tmp)
    tok.save_pretrained(tmp)
    (tmp / "tiny_model.json").write_text(json.dumps({"arch": arch, "seed": seed,
                                                     "params": sum(p.numel() for p in model.parameters())}))
    if out.exists():
        import shutil

        shutil.rmtree(out)
    tmp.rename(out)
    return out


def ensure_tiny_model(out_dir: Path, table_paths: list[str], arch: dict[str, Any] | None,
                      max_position_embeddings: int) -> Path:
    """Build the tiny model once; later runs reuse the folder (its tokenizer hash keys the token cache)."""
    if (out_dir / "config.json").is_file() and (out_dir / "tokenizer.json").is_file():
        return out_dir
    texts = list(corpus_from_tables(table_paths))
    if not texts:
        raise FileNotFoundError(f"no task tables to train the tiny tokenizer on: {table_paths}")
    return build_tiny_model(out_dir, texts, arch, max_position_embeddings)
