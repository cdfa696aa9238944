"""Data path of fine-tuning: chat template, answer-only labels, packing, and the token cache.

The tiny tokenizer is trained on the fixture task tables (written by Spark + Delta 4.4, see
tests/fixtures/train/tasks.py); the cache test runs real Ray Data on a small local cluster.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from trialpanorama.train import data as D
from trialpanorama.train.tiny import corpus_from_tables, train_tokenizer

FIXTURE_LAKE = Path(__file__).parent / "fixtures" / "train" / "lake"
TASKS = ["arm_design", "trial_completion_assessment", "sample_size_estimation"]


@pytest.fixture(scope="module")
def tok_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("tok")
    tok = train_tokenizer(corpus_from_tables([str(FIXTURE_LAKE / "tasks" / t) for t in TASKS]), 1024)
    tok.save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def lake(tmp_path_factory) -> Path:
    dst = tmp_path_factory.mktemp("lake") / "lake"
    shutil.copytree(FIXTURE_LAKE, dst)
    return dst


def test_answer_only_labels(tok_dir):
    tok = D.load_tokenizer(str(tok_dir))
    msgs = [{"role": "system", "content": "You are a clinical research assistant."},
            {"role": "user", "content": "Which arms? A. drug B. placebo"}]
    answer = '{"answer_choice": "B"}'
    ids, labels = D.encode_example(tok, msgs, answer)
    assert len(ids) == len(labels)
    n_prompt = len(tok.apply_chat_template(msgs, tokenize=True, add_generation_prompt=True,
                                           return_dict=True)["input_ids"])
    assert all(x == D.IGNORE for x in labels[:n_prompt])
    trained = [t for t, y in zip(ids, labels, strict=True) if y != D.IGNORE]
    assert trained == labels[n_prompt:]
    # exactly the answer and the end-of-turn marker are learned, nothing of the prompt
    assert tok.decode(trained) == answer + "<|im_end|>\n"
    assert tok.convert_tokens_to_ids("<|im_end|>") in trained


def test_a_long_prompt_is_cut_from_the_left_or_the_row_dropped_never_the_answer(tok_dir):
    tok = D.load_tokenizer(str(tok_dir))
    msgs = [{"role": "system", "content": "You are a clinical research assistant."},
            {"role": "user", "content": "Trial: " + "placebo arm " * 60 + "\nChoose: A. drug B. placebo"}]
    answer = '{"answer_choice": "B"}'
    ids, labels = D.encode_example(tok, msgs, answer)
    n_answer = sum(1 for y in labels if y != D.IGNORE)
    max_len = len(ids) - 10  # ten tokens too long
    assert D.fit_to_length(ids, labels, len(ids), "keep_tail") == (ids, labels, 0)  # fits: unchanged
    assert D.fit_to_length(ids, labels, max_len, "drop") == ([], [], 0)

    cut_ids, cut_labels, cut = D.fit_to_length(ids, labels, max_len, "keep_tail")
    assert cut == 10 and len(cut_ids) == max_len == len(cut_labels)
    assert cut_ids == ids[10:] and cut_labels == labels[10:]  # the prompt's tail, then the whole answer
    assert sum(1 for y in cut_labels if y != D.IGNORE) == n_answer
    assert tok.decode([t for t, y in zip(cut_ids, cut_labels, strict=True) if y != D.IGNORE]) == answer + "<|im_end|>\n"
    assert "Choose: A. drug B. placebo" in tok.decode(cut_ids)

    # an answer that would leave under a quarter of the budget to its prompt is dropped, not kept question-less
    tight = n_answer + 1
    assert tight - n_answer < tight // 4 and D.fit_to_length(ids, labels, tight, "keep_tail") == ([], [], 0)
    roomy = 4 * n_answer
    assert len(D.fit_to_length(ids, labels, roomy, "keep_tail")[0]) == roomy


def test_template_special_tokens_are_single_tokens(tok_dir):
    tok = D.load_tokenizer(str(tok_dir))
    for marker in ("<|im_start|>", "<|im_end|>", "<|pad|>"):
        assert len(tok(marker, add_special_tokens=False)["input_ids"]) == 1
    assert tok.pad_token == "<|pad|>" and tok.chat_template == D.CHATML_TEMPLATE


def test_packing_restarts_positions_and_masks_padding():
    examples = [([1, 2, 3], [D.IGNORE, 2, 3]), ([4, 5], [D.IGNORE, 5]), ([6, 7, 8, 9], [D.IGNORE] * 3 + [9]),
                (list(range(20)), list(range(20)))]  # the last one is longer than max_len: skipped
    rows = list(D.pack_examples(examples, max_len=6, pad_id=0))
    assert len(rows) == 2
    assert rows[0]["input_ids"].tolist() == [1, 2, 3, 4, 5, 0]
    assert rows[0]["position_ids"].tolist() == [0, 1, 2, 0, 1, 0]
    assert rows[0]["labels"].tolist() == [D.IGNORE, 2, 3, D.IGNORE, 5, D.IGNORE]
    assert rows[1]["input_ids"].tolist() == [6, 7, 8, 9, 0, 0] and int(rows[1]["n_tokens"]) == 4
    batch = D.pack_batch({"input_ids": np.array([np.array(x) for x, _ in examples[:3]], dtype=object),
                          "labels": np.array([np.array(y) for _, y in examples[:3]], dtype=object)}, 6, 0)
    assert batch["input_ids"].shape == (2, 6) and batch["n_tokens"].tolist() == [5, 4]


def test_packed_examples_do_not_attend_to_each_other(tok_dir):
    """transformers turns restarting position ids into a block-diagonal mask (only without a KV cache,
    hence use_cache=False, as in the train loop): the second example must not see the first."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(vocab_size=64, hidden_size=32, num_hidden_layers=1,
                                         num_attention_heads=2, num_key_value_heads=1, intermediate_size=64,
                                         attn_implementation="sdpa", use_cache=False)).eval()
    a, b = [5, 6, 7], [9, 10, 11, 12]
    pos = torch.tensor([[0, 1, 2, 0, 1, 2, 3]])
    alone = model(torch.tensor([b]), position_ids=torch.tensor([[0, 1, 2, 3]])).logits[0]
    packed = model(torch.tensor([a + b]), position_ids=pos).logits[0, 3:]
    other = model(torch.tensor([[40, 41, 42] + b]), position_ids=pos).logits[0, 3:]
    assert torch.allclose(packed, alone, atol=1e-5) and torch.allclose(packed, other, atol=1e-5)


def test_unpacked_batches_are_padded_with_a_mask():
    mb = D.collate({"input_ids": [np.array([1, 2, 3]), np.array([4])],
                    "labels": [np.array([D.IGNORE, 2, 3]), np.array([4])]}, packing=False, pad_id=0)
    assert mb["input_ids"].tolist() == [[1, 2, 3], [4, 0, 0]]
    assert mb["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0]]
    assert mb["labels"][1].tolist() == [4, D.IGNORE, D.IGNORE] and int(mb["n_tokens"]) == 4


@pytest.fixture(scope="module")
def ray_local():
    import ray

    if ray.is_initialized():  # an earlier module's driver connection must not be reused here
        ray.shutdown()
    ray.init(address="local", num_cpus=2, include_dashboard=False)
    yield
    ray.shutdown()


def test_token_cache_is_reused_and_keyed(ray_local, tok_dir, lake, tmp_path):
    path = str(lake / "tasks" / "sample_size_estimation")
    version = D.delta_version(path)
    assert version == 0
    first = D.tokenized_table(tmp_path, "sample_size_estimation", path, version, str(tok_dir), None, 256)
    assert not first["hit"]
    train = D.split_stats(first, "train")
    assert train["rows"] + D.split_stats(first, "test")["rows"] == 100  # the fixture's row count
    assert 0 < train["answer_tokens"] < train["tokens"]
    files = {p: p.stat().st_mtime_ns for p in Path(first["dir"]).rglob("*.parquet")}
    assert files

    second = D.tokenized_table(tmp_path, "sample_size_estimation", path, version, str(tok_dir), None, 256)
    assert second["hit"] and second["key"] == first["key"]
    assert {p: p.stat().st_mtime_ns for p in Path(second["dir"]).rglob("*.parquet")} == files
    assert json.loads((Path(first["dir"]).parent / "meta.json").read_text())["splits"] == first["splits"]

    # another max length or another template is another key (and another tokenization)
    other = D.tokenized_table(tmp_path, "sample_size_estimation", path, version, str(tok_dir), None, 128)
    assert not other["hit"] and other["key"] != first["key"]
    tpl = D.CHATML_TEMPLATE.replace("<|im_start|>{{ message['role'] }}", "<|im_start|>{{ message['role'] }}:")
    assert D.cache_key(path, version, str(tok_dir), tpl, 256) != first["key"]
    assert D.cache_key(path, version + 1, str(tok_dir), D.CHATML_TEMPLATE, 256) != first["key"]
    assert D.cache_key(path, version, str(tok_dir), D.CHATML_TEMPLATE, 256, "keep_tail") != first["key"]

    # keep_tail keeps the rows a short max length drops, with their prompts cut (and counts them)
    short = D.tokenized_table(tmp_path, "sample_size_estimation", path, version, str(tok_dir), None, 116)
    kept = D.tokenized_table(tmp_path, "sample_size_estimation", path, version, str(tok_dir), None, 116, "keep_tail")
    assert kept["key"] != short["key"] and kept["long_prompts"] == "keep_tail"
    dropped, cut = D.split_stats(short, "train"), D.split_stats(kept, "train")
    assert dropped["rows"] > 0 and dropped["dropped_too_long"] > 0 and dropped["prompt_cut_rows"] == 0
    assert cut["rows"] == dropped["rows"] + dropped["dropped_too_long"] - cut["dropped_too_long"]
    assert cut["prompt_cut_rows"] == cut["rows"] - dropped["rows"] > 0
    with pytest.raises(ValueError, match="long_prompts"):
        D.tokenized_table(tmp_path, "sample_size_estimation", path, version, str(tok_dir), None, 116, "truncate")

    # the mixed dataset reads only the cache, with the weight applied
    ds = D.mixed_dataset({"sample_size_estimation": first}, {"sample_size_estimation": 2.0}, seed=0)
    assert ds.count() == 2 * train["rows"]
    half = D.mixed_dataset({"sample_size_estimation": first}, {"sample_size_estimation": 0.5}, seed=0)
    assert 0.25 * train["rows"] < half.count() < 0.75 * train["rows"]

    # the driver-side mix (materialized recipes) keeps exactly the rows the streaming mix keeps, shuffled
    for weight, streamed in ((2.0, ds), (0.5, half)):
        table = D.mixed_table({"sample_size_estimation": first}, {"sample_size_estimation": weight}, seed=0)
        assert sorted(table.column("sample_id").to_pylist()) == sorted(r["sample_id"] for r in streamed.take_all())
    table = D.mixed_table({"sample_size_estimation": first}, {"sample_size_estimation": 1.0}, seed=0)
    assert set(table.column("split").to_pylist()) == {"train"} and min(table.column("n_tokens").to_pylist()) > 0
    assert table.column("sample_id").to_pylist() != sorted(table.column("sample_id").to_pylist())  # shuffled
    assert table.equals(D.mixed_table({"sample_size_estimation": first}, {"sample_size_estimation": 1.0}, seed=0))
