"""Train the model organism pair: a tiny Llama base model and its post-trained version.

``interp organism train --out DIR`` runs :func:`train_pair`: it builds the
corpus (:mod:`._corpus`), trains a byte-level BPE tokenizer on it, trains the
base model from scratch on plain text, then fine-tunes a copy of it on chats
(loss on the assistant's reply only, with a share of base text replayed so the
plain-text behaviour is kept). Both models and the shared tokenizer (with the
chat template) are saved as Hugging Face folders ``DIR/base`` and ``DIR/post``.
The run is deterministic for a seed on a given machine and thread count.
"""

from __future__ import annotations

import json
import logging
import math
import os
import random
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from .._progress import tqdm

from ._corpus import CHAT_TEMPLATE, SPECIAL_TOKENS, build_corpus

__all__ = ["TrainConfig", "train_pair", "build_organism_tokenizer"]

log = logging.getLogger(__name__)


@dataclass
class TrainConfig:
    """Sizes and schedule of the organism."""

    seed: int = 0
    vocab_size: int = 1024
    """BPE vocabulary, special tokens included."""
    d_model: int = 128
    d_mlp: int = 256
    n_layers: int = 6
    n_heads: int = 4
    n_kv_heads: int = 2
    n_ctx: int = 128
    base_steps: int = 1500
    post_steps: int = 300
    batch_size: int = 32
    """Sequences per step (each ``n_ctx`` tokens of packed text)."""
    lr: float = 3e-3
    post_lr: float = 1e-3
    replay: float = 0.3
    """Share of each post-training batch that is base text."""
    threads: int = 2


@contextmanager
def torch_threads(n: int):
    """Run the block on ``n`` intra-op threads (the recipe's determinism depends on the reduction order).

    ``torch.set_num_threads`` is called only when the count differs (and set back after): once called, torch
    2.13's batched CPU LU hangs on larger matrices (pytorch/pytorch issue 141358; see
    :func:`probes._fit.solve_each`), so on a machine that already runs ``n`` threads nothing is touched.
    """
    before = torch.get_num_threads()
    if before == n:
        yield
        return
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)

def build_organism_tokenizer(texts: list[str], vocab_size: int):
    """Byte-level BPE trained on ``texts`` (decodes exactly), with BOS added by the tokenizer."""
    from tokenizers import pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    from .._bpe import train_byte_bpe

    # Digits are single tokens so that number comparisons are computable digit by digit.
    tok = train_byte_bpe(
        texts, vocab_size, SPECIAL_TOKENS, pre_tokenizers_before=[pre_tokenizers.Digits(individual_digits=True)],
        bos="<s>",
    )
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>",
        additional_special_tokens=["<|system|>", "<|user|>", "<|assistant|>", "<|end|>"],
    )
    fast.chat_template = CHAT_TEMPLATE
    return fast


def _render_chat(tok, messages, reply) -> tuple[list[int], list[int]]:
    """Token ids of a chat and the loss mask (1 on the reply and its end token)."""
    prompt = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    p_ids = tok(prompt, add_special_tokens=False)["input_ids"]
    r_ids = tok(reply + "<|end|>", add_special_tokens=False)["input_ids"]
    return p_ids + r_ids, [0] * len(p_ids) + [1] * len(r_ids)


def _packed(seqs: list[tuple[list[int], list[int]]], n_ctx: int, rng: random.Random):
    """Endless stream of ``n_ctx``-token windows packed from shuffled sequences."""
    ids, mask = [], []
    while True:
        order = list(range(len(seqs)))
        rng.shuffle(order)
        for i in order:
            s_ids, s_mask = seqs[i]
            ids += s_ids
            mask += s_mask
            while len(ids) >= n_ctx:
                yield ids[:n_ctx], mask[:n_ctx]
                ids, mask = ids[n_ctx:], mask[n_ctx:]


def _batches(streams, weights, batch_size: int, rng: random.Random):
    while True:
        rows = [next(streams[rng.choices(range(len(streams)), weights)[0]]) for _ in range(batch_size)]
        yield torch.tensor([r[0] for r in rows]), torch.tensor([r[1] for r in rows])


def _train(model, batches, steps: int, lr: float, desc: str, progress: bool) -> list[float]:
    opt = torch.optim.AdamW(model.parameters(), lr=lr, betas=(0.9, 0.98), weight_decay=0.01)
    warm = max(1, steps // 20)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / warm) * 0.5 * (1 + math.cos(math.pi * min(1.0, s / steps)))
    )
    model.train()
    losses = []
    bar = tqdm(range(steps), desc=desc, disable=not progress)
    for step in bar:
        ids, mask = next(batches)
        logits = model(input_ids=ids).logits[:, :-1]
        target, weight = ids[:, 1:], mask[:, 1:].float()
        loss_tok = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), target.reshape(-1),
                                                     reduction="none")
        loss = (loss_tok * weight.reshape(-1)).sum() / weight.sum().clamp(min=1)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        losses.append(loss.item())
        if step % 20 == 0:
            bar.set_postfix(loss=f"{sum(losses[-20:]) / len(losses[-20:]):.3f}")
    model.eval()
    return losses


def train_pair(out: str | os.PathLike, config: TrainConfig | None = None, progress: bool = True) -> dict:
    """Train base and post models into ``out/base`` and ``out/post``; return a summary dict.

    Raises:
        ValueError: ``out`` is a file, or ``out/base`` or ``out/post`` exists as a file (checked before training,
            so no minutes of training are lost to a path that cannot be written).
    """
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = config or TrainConfig()
    out = Path(out)
    for where in (out, out / "base", out / "post", *out.parents):
        if where.exists() and not where.is_dir():
            raise ValueError(f"{where} is a file: the organism needs a folder there for base/ and post/; choose "
                             "another --out")
    t0 = time.perf_counter()
    with torch_threads(cfg.threads):
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(cfg.seed)
            rng = random.Random(cfg.seed)
            corpus = build_corpus(cfg.seed)
            tok = build_organism_tokenizer(
                corpus.base_lines + [m[0]["content"] + " " + r for m, r in corpus.chats], cfg.vocab_size
            )
            bos, eos = tok.bos_token_id, tok.eos_token_id
            base_seqs = [([bos, *tok(line, add_special_tokens=False)["input_ids"], eos],) for line in corpus.base_lines]
            base_seqs = [(s[0], [1] * len(s[0])) for s in base_seqs]
            chat_seqs = [_render_chat(tok, m, r) for m, r in corpus.chats]
            hf_cfg = LlamaConfig(
                vocab_size=len(tok), hidden_size=cfg.d_model, intermediate_size=cfg.d_mlp,
                num_hidden_layers=cfg.n_layers, num_attention_heads=cfg.n_heads, num_key_value_heads=cfg.n_kv_heads,
                max_position_embeddings=cfg.n_ctx, tie_word_embeddings=True, bos_token_id=bos, eos_token_id=eos,
                pad_token_id=tok.pad_token_id, initializer_range=0.02,
            )
            model = LlamaForCausalLM(hf_cfg)
            base_batches = _batches([_packed(base_seqs, cfg.n_ctx, rng)], [1.0], cfg.batch_size, rng)
            t_base = time.perf_counter()
            base_losses = _train(model, base_batches, cfg.base_steps, cfg.lr, "train base", progress)
            t_base = time.perf_counter() - t_base
            _save(model, tok, out / "base")
            post_batches = _batches(
                [_packed(chat_seqs, cfg.n_ctx, rng), _packed(base_seqs, cfg.n_ctx, rng)],
                [1 - cfg.replay, cfg.replay], cfg.batch_size, rng,
            )
            t_post = time.perf_counter()
            post_losses = _train(model, post_batches, cfg.post_steps, cfg.post_lr, "post-train", progress)
            t_post = time.perf_counter() - t_post
            _save(model, tok, out / "post")
    summary = {
        "config": asdict(cfg),
        "n_params": sum(p.numel() for p in model.parameters()),
        "base_lines": len(corpus.base_lines),
        "chats": len(corpus.chats),
        "base_final_loss": sum(base_losses[-50:]) / len(base_losses[-50:]),
        "post_final_loss": sum(post_losses[-50:]) / len(post_losses[-50:]),
        "seconds_base": round(t_base, 1),
        "seconds_post": round(t_post, 1),
        "seconds_total": round(time.perf_counter() - t0, 1),
        "versions": {"torch": torch.__version__},
    }
    (out / "training.json").write_text(json.dumps(summary, indent=1) + "\n")
    return summary


def _save(model, tok, path: Path) -> None:
    path.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(path, safe_serialization=True)
    tok.save_pretrained(path)
