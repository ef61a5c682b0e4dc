"""Tiny random-weight models of real families, saved as Hugging Face folders.

Tests, benchmarks and the plumbing demo need models of real architecture
families on a machine that cannot download weights. These builders write a
folder exactly like a hub snapshot (``config.json``, ``model.safetensors``,
``generation_config.json``, ``tokenizer.json``, ``tokenizer_config.json``,
``chat_template.jinja``), so the toolkit boots it through the same path as a
user's model (``TransformerBridge.boot_transformers(path)``, ``AutoTokenizer``).

**The weights are random.** These models exist to test the toolkit's plumbing
(hook names, shapes, tokenization, BOS handling, chat formatting, batching);
nothing measured on them is a finding about language models.

Usage::

    from interp.testing import build_tiny_pair
    base, post = build_tiny_pair("qwen2", "/tmp/tiny")   # /tmp/tiny/base, /tmp/tiny/post

The tokenizer is a small byte-level BPE (400 tokens, trained on a built-in
multilingual text, with the full byte alphabet so any text encodes without
unknown tokens), dressed in each family's special-token conventions:

=========  ======================  =========================  ===========================
family     BOS                     ``tok(text)`` adds BOS     chat template
=========  ======================  =========================  ===========================
gpt2       ``<|endoftext|>``       no                         none
llama      ``<s>``                 yes                        Llama-3 style headers
qwen2      none (like Qwen2.5)     no (no BOS exists)         ChatML, no default system
gemma2     ``<bos>``               yes                        Gemma turns; system raises
mistral    ``<s>``                 yes                        ``[INST] ... [/INST]``
=========  ======================  =========================  ===========================

EOS / PAD: gpt2 ``<|endoftext|>`` / none (it is also the UNK); llama ``</s>`` /
none; qwen2 ``<|im_end|>`` / ``<|endoftext|>``; gemma2 ``<eos>`` / ``<pad>``;
mistral ``</s>`` / none (UNK ``<unk>``).

The qwen2 tokenizer splits text with Qwen2's own pre-tokenizer (single digits,
NFC normalisation), because ``AutoTokenizer`` always rebuilds a ``qwen2``
folder's tokenizer as ``Qwen2Tokenizer`` with that pre-tokenizer: building it
the same way keeps :func:`build_tokenizer` and the saved folder identical.

These are the tokenizers as saved. TransformerLens's own ``bridge.tokenizer``
changes them when it boots: it reloads gpt2's with ``add_bos_token=True`` (so
it prepends ``<|endoftext|>``), and gives qwen2's a BOS equal to its EOS
(``<|im_end|>``, though it still prepends nothing) and mistral's/llama's a PAD
equal to EOS.

Model shapes: llama, qwen2, gemma2 and mistral use grouped-query attention
(``n_heads // 2`` key/value heads); gemma2 alternates sliding-window (window
``n_ctx // 2``) and global layers, with its logit soft-capping and tied
embeddings; qwen2 ties embeddings like the small Qwen2.5 models; weights are
drawn with ``initializer_range=0.1`` so activations vary visibly with the input.
"""

from __future__ import annotations

import copy
import os
import shutil
from functools import lru_cache
from pathlib import Path

import torch
import transformers

__all__ = ["FAMILIES", "VOCAB_SIZE", "build_tokenizer", "build_tiny_model", "build_tiny_pair"]

FAMILIES: tuple[str, ...] = ("gpt2", "llama", "qwen2", "gemma2", "mistral")

VOCAB_SIZE = 400

# ~30 sentences in English, French, German and Spanish, with digits and questions.
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
Où est la gare? Il est 8 heures et demie. Nous avons 3 enfants.
Wie spät ist es? Es ist 10 Uhr. Ich wohne seit 2019 in München.
¿Dónde está el museo? Tengo 25 años y vivo en Sevilla.
Water boils at 100 degrees. Is the Earth flat? No, it is round.
"""

_SPECIALS = {
    "gpt2": dict(bos="<|endoftext|>", eos="<|endoftext|>", pad=None, unk="<|endoftext|>", extra=[], add_bos=False),
    "llama": dict(
        bos="<s>", eos="</s>", pad=None, unk=None,
        extra=["<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"], add_bos=True,
    ),
    "qwen2": dict(bos=None, eos="<|im_end|>", pad="<|endoftext|>", unk=None, extra=["<|im_start|>"], add_bos=False),
    "gemma2": dict(
        bos="<bos>", eos="<eos>", pad="<pad>", unk=None, extra=["<start_of_turn>", "<end_of_turn>"], add_bos=True,
    ),
    "mistral": dict(bos="<s>", eos="</s>", pad=None, unk="<unk>", extra=[], add_bos=True),
}

_TEMPLATES = {
    # Llama 3: every role (system included) gets a header; the prompt opens with BOS.
    "llama": (
        "{{ bos_token }}{% for m in messages %}<|start_header_id|>{{ m['role'] }}<|end_header_id|>\n\n"
        "{{ m['content'] }}<|eot_id|>{% endfor %}"
        "{% if add_generation_prompt %}<|start_header_id|>assistant<|end_header_id|>\n\n{% endif %}"
    ),
    # ChatML as in Qwen2.5 (without its default system prompt); no BOS.
    "qwen2": (
        "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
        "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
    ),
    # Gemma 2: user/model turns; like the real template, a system message raises.
    "gemma2": (
        "{{ bos_token }}{% for m in messages %}{% if m['role'] == 'system' %}"
        "{{ raise_exception('System role not supported') }}{% endif %}"
        "<start_of_turn>{{ 'model' if m['role'] == 'assistant' else m['role'] }}\n{{ m['content'] }}<end_of_turn>\n"
        "{% endfor %}{% if add_generation_prompt %}<start_of_turn>model\n{% endif %}"
    ),
    # Mistral Instruct: [INST] turns; a system message is folded into the first user turn.
    # The prompt always ends in "[/INST]", so add_generation_prompt changes nothing (as in the real one).
    "mistral": (
        "{{ bos_token }}{% if messages and messages[0]['role'] == 'system' %}"
        "{% set system = messages[0]['content'] + '\n\n' %}{% set messages = messages[1:] %}"
        "{% else %}{% set system = '' %}{% endif %}"
        "{% for m in messages %}{% if m['role'] == 'user' %}"
        "[INST] {{ system if loop.first else '' }}{{ m['content'] }} [/INST]"
        "{% elif m['role'] == 'assistant' %}{{ m['content'] }}{{ eos_token }}"
        "{% else %}{{ raise_exception('Only user and assistant roles are supported after a first system message') }}"
        "{% endif %}{% endfor %}"
    ),
}

# Qwen2's pre-tokenizer regex (the one transformers' Qwen2Tokenizer installs on load).
_QWEN2_SPLIT = (
    r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"""
)


def _check_family(family: str) -> str:
    if family not in FAMILIES:
        raise ValueError(f"unknown family {family!r}; known: {', '.join(FAMILIES)}")
    return family


@lru_cache(maxsize=None)
def _tokenizer_json(family: str) -> str:
    """The trained ``tokenizers`` tokenizer of ``family``, serialised (training is deterministic)."""
    from tokenizers import Regex, normalizers, pre_tokenizers

    from ._bpe import train_byte_bpe

    spec = _SPECIALS[family]
    specials = list(dict.fromkeys(t for t in (spec["unk"], spec["bos"], spec["eos"], spec["pad"], *spec["extra"]) if t))
    qwen2 = family == "qwen2"
    tok = train_byte_bpe(
        _CORPUS.splitlines(), VOCAB_SIZE, specials,
        normalizer=normalizers.NFC() if qwen2 else None,
        pre_tokenizers_before=[pre_tokenizers.Split(Regex(_QWEN2_SPLIT), behavior="isolated", invert=False)] if qwen2 else (),
        byte_level_regex=not qwen2,
        bos=spec["bos"] if spec["add_bos"] else None,  # these families' tokenizers prepend BOS themselves
    )
    return tok.to_str()


def build_tokenizer(family: str, chat_template: bool | None = None) -> transformers.PreTrainedTokenizerFast:
    """A small byte-level BPE with ``family``'s special tokens (any text encodes; no unknowns).

    ``chat_template``: ``None`` gives the family's default (a template for every
    family but gpt2), ``True`` requires one, ``False`` leaves it out.
    """
    from tokenizers import Tokenizer

    spec = _SPECIALS[_check_family(family)]
    kwargs = {"add_bos_token": True, "add_eos_token": False} if spec["add_bos"] else {}
    tok = transformers.PreTrainedTokenizerFast(
        tokenizer_object=Tokenizer.from_str(_tokenizer_json(family)),
        bos_token=spec["bos"], eos_token=spec["eos"], pad_token=spec["pad"], unk_token=spec["unk"],
        additional_special_tokens=spec["extra"] or None,
        **kwargs,
    )
    if chat_template is None:
        chat_template = family in _TEMPLATES
    if chat_template:
        if family not in _TEMPLATES:
            raise ValueError(f"family {family!r} has no chat template")
        tok.chat_template = _TEMPLATES[family]
    return tok


def _config(family: str, tok, *, n_layers: int, d_model: int, d_mlp: int, n_heads: int, n_ctx: int):
    if d_model % n_heads:
        raise ValueError(f"d_model={d_model} is not divisible by n_heads={n_heads}")
    ids = dict(bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    vocab = len(tok)
    if family == "gpt2":
        return transformers.GPT2Config(
            vocab_size=vocab, n_positions=n_ctx, n_embd=d_model, n_layer=n_layers, n_head=n_heads,
            n_inner=d_mlp, initializer_range=0.1, **ids,
        )
    common = dict(
        vocab_size=vocab, hidden_size=d_model, intermediate_size=d_mlp, num_hidden_layers=n_layers,
        num_attention_heads=n_heads, num_key_value_heads=max(1, n_heads // 2),
        max_position_embeddings=n_ctx, initializer_range=0.1, **ids,
    )
    if family == "llama":
        return transformers.LlamaConfig(**common)
    if family == "qwen2":
        return transformers.Qwen2Config(tie_word_embeddings=True, **common)
    if family == "mistral":
        return transformers.MistralConfig(sliding_window=None, **common)
    head_dim = d_model // n_heads
    return transformers.Gemma2Config(
        head_dim=head_dim, query_pre_attn_scalar=head_dim, sliding_window=max(2, n_ctx // 2), **common,
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
    tokenizer=None,
) -> Path:
    """Write a random-weight ``family`` model with its tokenizer to ``path``; return the path.

    The weights depend only on ``seed`` and the shape (the global RNG state is
    left untouched). ``tokenizer`` replaces :func:`build_tokenizer`'s (its
    vocabulary size and special-token ids go into the config; it is not
    modified). ``chat_template``: ``None`` keeps the default (the family's
    template, or the given tokenizer's own), ``True`` requires the family's,
    ``False`` saves none.
    """
    _check_family(family)
    if tokenizer is None:
        tok = build_tokenizer(family, chat_template)
    else:
        tok = copy.deepcopy(tokenizer)
        if chat_template is False:
            tok.chat_template = None
        elif chat_template:
            tok.chat_template = build_tokenizer(family, True).chat_template
    cfg = _config(family, tok, n_layers=n_layers, d_model=d_model, d_mlp=d_mlp, n_heads=n_heads, n_ctx=n_ctx)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = transformers.AutoModelForCausalLM.from_config(cfg).eval()
    path = Path(path)
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return path


def build_tiny_pair(
    family: str, root: str | os.PathLike, *, seed: int = 0, noise: float = 0.05, **kw
) -> tuple[Path, Path]:
    """Write ``root/base`` and ``root/post``; return both paths.

    ``post`` is ``base`` with seeded Gaussian noise added to every weight
    tensor, scaled by ``noise`` times that tensor's standard deviation
    (constant tensors such as norm scales stay equal). Both folders carry the
    same tokenizer files, chat template included where the family has one (as
    e.g. Qwen2.5 base checkpoints ship one too). ``kw`` goes to
    :func:`build_tiny_model`.
    """
    from safetensors.torch import load_file, save_file

    root = Path(root)
    base = build_tiny_model(family, root / "base", seed=seed, **kw)
    post = root / "post"
    shutil.copytree(base, post, dirs_exist_ok=True)
    weights = load_file(post / "model.safetensors")
    gen = torch.Generator().manual_seed(seed + 1)
    for name, w in weights.items():
        if w.is_floating_point() and w.numel() > 1:
            scale = noise * w.float().std().nan_to_num(0.0).item()
            weights[name] = (w.float() + scale * torch.randn(w.shape, generator=gen)).to(w.dtype)
    save_file(weights, post / "model.safetensors", metadata={"format": "pt"})
    return base, post
