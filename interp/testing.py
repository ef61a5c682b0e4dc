"""Tiny random-weight models of real families, saved as Hugging Face folders.

Tests, benchmarks and the plumbing demo need models of real architecture
families on a machine that cannot download weights. These builders write a
folder exactly like a hub snapshot (``config.json``, ``model.safetensors``,
``tokenizer.json``, ``tokenizer_config.json``, chat template), so the toolkit
boots it through the same path as a user's model. The weights are random:
these models check the toolkit's plumbing, they are not for findings.

Each family's tokenizer follows that family's special-token conventions:

=========  ======================  ==========================  ================
family     BOS                     adds BOS on ``tok(text)``   chat template
=========  ======================  ==========================  ================
gpt2       ``<|endoftext|>``       no                          none
llama      ``<s>``                 yes                         Llama-3 style
qwen2      none                    (no BOS exists)             ChatML
gemma2     ``<bos>``               yes                         Gemma turns
=========  ======================  ==========================  ================
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

import torch

__all__ = ["FAMILIES", "build_tokenizer", "build_tiny_model", "build_tiny_pair"]

FAMILIES: tuple[str, ...] = ("gpt2", "llama", "qwen2", "gemma2")

_CORPUS = """\
The city of Paris is in France. The city of Berlin is in Germany.
Madrid is the capital of Spain, and Rome is the capital of Italy.
Seventy-two is larger than fifteen. 72 is larger than 15, and 8 is smaller than 9.
The Spanish word 'perro' means 'dog'. The French word 'chat' means 'cat'.
Le chat est sur la table. La ville de Lyon est en France.
Die Katze ist auf dem Tisch. Berlin liegt in Deutschland.
El gato está sobre la mesa. Madrid está en España.
Write a short poem about the sea. How do I bake bread at home?
Explain how photosynthesis works, please. Give me three tips for studying.
I cannot help with that request. Sure, here is an answer to your question.
Is this statement true or false? True. False. Yes. No.
What is 12 plus 30? The answer is 42. Statement number 7 is here.
"""

_SPECIALS = {
    "gpt2": dict(bos="<|endoftext|>", eos="<|endoftext|>", pad=None, extra=[]),
    "llama": dict(bos="<s>", eos="</s>", pad=None, extra=["<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"]),
    "qwen2": dict(bos=None, eos="<|im_end|>", pad="<|endoftext|>", extra=["<|im_start|>"]),
    "gemma2": dict(bos="<bos>", eos="<eos>", pad="<pad>", extra=["<start_of_turn>", "<end_of_turn>"]),
}

_TEMPLATES = {
    "llama": (
        "{{ bos_token }}{% for m in messages %}<|start_header_id|>{{ m['role'] }}<|end_header_id|>\n\n"
        "{{ m['content'] }}<|eot_id|>{% endfor %}"
        "{% if add_generation_prompt %}<|start_header_id|>assistant<|end_header_id|>\n\n{% endif %}"
    ),
    "qwen2": (
        "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
        "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
    ),
    "gemma2": (
        "{{ bos_token }}{% for m in messages %}{% if m['role'] == 'system' %}"
        "{{ raise_exception('System role not supported') }}{% endif %}"
        "<start_of_turn>{{ 'model' if m['role'] == 'assistant' else m['role'] }}\n{{ m['content'] }}<end_of_turn>\n"
        "{% endfor %}{% if add_generation_prompt %}<start_of_turn>model\n{% endif %}"
    ),
}


def _check_family(family: str) -> str:
    if family not in FAMILIES:
        raise ValueError(f"unknown family {family!r}; known: {', '.join(FAMILIES)}")
    return family


@lru_cache(maxsize=None)
def _tokenizer_json(family: str) -> str:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    spec = _SPECIALS[family]
    specials = list(dict.fromkeys(t for t in (spec["bos"], spec["eos"], spec["pad"], *spec["extra"]) if t))
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_CORPUS.splitlines(), trainer)
    if family in ("llama", "gemma2"):  # these families' tokenizers prepend BOS themselves
        bos = spec["bos"]
        tok.post_processor = processors.TemplateProcessing(
            single=f"{bos} $A", pair=f"{bos} $A {bos} $B", special_tokens=[(bos, tok.token_to_id(bos))]
        )
    else:
        tok.post_processor = processors.ByteLevel(trim_offsets=False)
    return tok.to_str()


def build_tokenizer(family: str, chat_template: bool | None = None):
    """A small byte-level BPE with ``family``'s special tokens (any text encodes; no unknowns)."""
    from tokenizers import Tokenizer
    from transformers import PreTrainedTokenizerFast

    spec = _SPECIALS[_check_family(family)]
    tok = PreTrainedTokenizerFast(
        tokenizer_object=Tokenizer.from_str(_tokenizer_json(family)),
        bos_token=spec["bos"], eos_token=spec["eos"], pad_token=spec["pad"],
        unk_token=spec["eos"] if family == "gpt2" else None,
        additional_special_tokens=spec["extra"] or None,
    )
    if chat_template is None:
        chat_template = family in _TEMPLATES
    if chat_template:
        if family not in _TEMPLATES:
            raise ValueError(f"family {family!r} has no chat template")
        tok.chat_template = _TEMPLATES[family]
    return tok


def _config(family: str, tok, *, n_layers, d_model, d_mlp, n_heads, n_ctx):
    import transformers as tf

    ids = dict(
        bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
    )
    vocab = len(tok)
    if family == "gpt2":
        return tf.GPT2Config(
            vocab_size=vocab, n_positions=n_ctx, n_embd=d_model, n_layer=n_layers, n_head=n_heads,
            n_inner=d_mlp, initializer_range=0.1, **ids,
        )
    common = dict(
        vocab_size=vocab, hidden_size=d_model, intermediate_size=d_mlp, num_hidden_layers=n_layers,
        num_attention_heads=n_heads, max_position_embeddings=n_ctx, initializer_range=0.1, **ids,
    )
    if family == "llama":
        return tf.LlamaConfig(num_key_value_heads=max(1, n_heads // 2), **common)
    if family == "qwen2":
        return tf.Qwen2Config(num_key_value_heads=max(1, n_heads // 2), tie_word_embeddings=True, **common)
    return tf.Gemma2Config(
        num_key_value_heads=max(1, n_heads // 2), head_dim=d_model // n_heads,
        sliding_window=max(2, n_ctx // 2), **common,
    )


def build_tiny_model(
    family: str,
    path: str | os.PathLike,
    *,
    seed: int = 0,
    n_layers: int = 2,
    d_model: int = 64,
    d_mlp: int = 128,
    n_heads: int = 4,
    n_ctx: int = 64,
    chat_template: bool | None = None,
) -> Path:
    """Write a random-weight ``family`` model with its tokenizer to ``path``; return the path.

    The weights depend only on ``seed`` (the global RNG state is left untouched).
    """
    from transformers import AutoModelForCausalLM

    tok = build_tokenizer(family, chat_template)
    cfg = _config(_check_family(family), tok, n_layers=n_layers, d_model=d_model, d_mlp=d_mlp,
                  n_heads=n_heads, n_ctx=n_ctx)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = AutoModelForCausalLM.from_config(cfg, attn_implementation="eager").eval()
    path = Path(path)
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return path


def build_tiny_pair(
    family: str, root: str | os.PathLike, *, seed: int = 0, noise: float = 0.05, **kw
) -> tuple[Path, Path]:
    """Write ``root/base`` and ``root/post``: post = base + seeded Gaussian noise of relative scale ``noise``.

    Both share the tokenizer files (and the family's chat template, as e.g.
    Qwen2.5 base models ship one too).
    """
    from safetensors.torch import load_file, save_file

    root = Path(root)
    base = build_tiny_model(family, root / "base", seed=seed, **kw)
    post = build_tiny_model(family, root / "post", seed=seed, **kw)
    weights = load_file(post / "model.safetensors")
    gen = torch.Generator().manual_seed(seed + 1)
    for name, w in weights.items():
        if w.is_floating_point():
            scale = noise * w.float().std().nan_to_num(0.0) if w.numel() > 1 else 0.0
            weights[name] = (w + scale * torch.randn(w.shape, generator=gen)).to(w.dtype)
    save_file(weights, post / "model.safetensors", metadata={"format": "pt"})
    return base, post
