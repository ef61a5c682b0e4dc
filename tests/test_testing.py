"""interp.testing: tiny random-weight models of real families, saved as HF folders."""

from __future__ import annotations

import json
import unicodedata

import pytest
import torch
from safetensors.torch import load_file

from interp.testing import FAMILIES, VOCAB_SIZE, build_tiny_model, build_tiny_pair, build_tokenizer

# A shape other than the defaults, so the config plumbing is checked.
SHAPE = dict(n_layers=3, d_model=32, d_mlp=80, n_heads=4, n_ctx=48)
CHAT = ("llama", "qwen2", "gemma2", "mistral")
HOOKS = ("hook_resid_pre", "hook_resid_mid", "hook_resid_post", "hook_attn_out", "hook_mlp_out", "mlp.hook_post")

# family -> (bos, eos, pad, tok(text) prepends BOS)
CONVENTIONS = {
    "gpt2": ("<|endoftext|>", "<|endoftext|>", None, False),
    "llama": ("<s>", "</s>", None, True),
    "qwen2": (None, "<|im_end|>", "<|endoftext|>", False),
    "gemma2": ("<bos>", "<eos>", "<pad>", True),
    "mistral": ("<s>", "</s>", None, True),
}
GENERATION_PROMPT_END = {
    "llama": "<|start_header_id|>assistant<|end_header_id|>\n\n",
    "qwen2": "<|im_start|>assistant\n",
    "gemma2": "<start_of_turn>model\n",
    "mistral": "[INST] Hi [/INST]",
}

TEXTS = [
    "The city of Paris is in France.",
    "Où est la gare? Überraschung! ¿Qué tal, señor Muñoz? Ça va très bien.",
    "Numbers: 0 1 22 333 4444 3.14159 -7 1e10",
    "  leading and trailing spaces, tabs\tand\nnewlines\n\n",
    "Emoji 🙂 and CJK 日本語 and Ελληνικά, zero-width\u200bjoiner.",
    "<notatoken> <|fake|> [INST] plain text that looks like markup",
    "",
]


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny_models")
    return {f: build_tiny_model(f, root / f, **SHAPE) for f in FAMILIES}


@pytest.fixture(scope="module")
def bridges(built):
    from transformer_lens.model_bridge import TransformerBridge

    return {f: TransformerBridge.boot_transformers(str(p), device="cpu") for f, p in built.items()}


@pytest.fixture(scope="module")
def hf_tokenizers(built):
    from transformers import AutoTokenizer

    return {f: AutoTokenizer.from_pretrained(p) for f, p in built.items()}


@pytest.fixture(params=FAMILIES)
def fam(request) -> str:
    return request.param


def test_folder_looks_like_a_hub_snapshot(built, fam):
    names = {p.name for p in built[fam].iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"} <= names
    assert ("chat_template.jinja" in names) == (fam in CHAT)
    assert not any(n.endswith(".bin") for n in names)
    cfg = json.loads((built[fam] / "config.json").read_text())
    assert cfg["model_type"] == fam and cfg["vocab_size"] == VOCAB_SIZE


def test_config_shapes(built, fam):
    from transformers import AutoConfig

    cfg = AutoConfig.from_pretrained(built[fam])
    assert cfg.num_hidden_layers == 3 and cfg.hidden_size == 32
    if fam != "gpt2":
        assert cfg.intermediate_size == 80
        assert cfg.num_key_value_heads < cfg.num_attention_heads == 4  # grouped-query attention
    if fam == "gemma2":
        assert cfg.head_dim == 8 and cfg.sliding_window <= SHAPE["n_ctx"]
        assert "sliding_attention" in cfg.layer_types and "full_attention" in cfg.layer_types
    tok = build_tokenizer(fam)
    ids = (cfg.bos_token_id, cfg.eos_token_id, cfg.pad_token_id)
    assert ids == (tok.bos_token_id, tok.eos_token_id, tok.pad_token_id)


def test_boots_in_transformer_bridge_with_the_hooks(bridges, fam):
    b = bridges[fam]
    assert b.cfg.n_layers == SHAPE["n_layers"] and b.cfg.d_model == SHAPE["d_model"]
    for layer in range(SHAPE["n_layers"]):
        for hook in HOOKS:
            assert f"blocks.{layer}.{hook}" in b.hook_dict, (fam, layer, hook)


def test_residual_hooks_add_up(bridges, hf_tokenizers, fam):
    b = bridges[fam]
    ids = torch.tensor([hf_tokenizers[fam]("Le chat est sur la table, 42 fois.").input_ids])
    with torch.no_grad():
        _, cache = b.run_with_cache(ids)
    for layer in range(SHAPE["n_layers"]):
        def h(name, layer=layer):
            return cache[f"blocks.{layer}.{name}"]

        torch.testing.assert_close(h("hook_resid_mid"), h("hook_resid_pre") + h("hook_attn_out"))
        torch.testing.assert_close(h("hook_resid_post"), h("hook_resid_mid") + h("hook_mlp_out"))
        assert h("mlp.hook_post").shape == (1, ids.shape[1], SHAPE["d_mlp"])
        if layer:
            torch.testing.assert_close(h("hook_resid_pre"), cache[f"blocks.{layer - 1}.hook_resid_post"])


def test_bridge_logits_match_transformers(built, bridges, hf_tokenizers, fam):
    from transformers import AutoModelForCausalLM

    hf = AutoModelForCausalLM.from_pretrained(built[fam], attn_implementation="eager").eval()
    text = "The cat is on the table. Le chat est sur la table. Die Katze ist auf dem Tisch, 12345."
    ids = torch.tensor([hf_tokenizers[fam](text).input_ids])
    assert ids.shape[1] > SHAPE["n_ctx"] // 2  # longer than gemma2's sliding window
    with torch.no_grad():
        ours, ref = bridges[fam](ids), hf(ids).logits
    torch.testing.assert_close(ours, ref, atol=1e-4, rtol=1e-4)
    # random weights, but not degenerate: the prediction depends on the input
    assert ref[0].std(0).mean() > 0.1
    assert not torch.allclose(ref[0, -1], ref[0, -2], atol=0.05)


def test_tokenizer_round_trips_any_text(hf_tokenizers, fam):
    built_tok, saved_tok = build_tokenizer(fam), hf_tokenizers[fam]
    assert len(built_tok) == len(saved_tok) == VOCAB_SIZE
    vocab = built_tok.get_vocab()
    from tokenizers.pre_tokenizers import ByteLevel

    assert set(ByteLevel.alphabet()) <= set(vocab)  # every byte has a token: no unknowns
    for text in TEXTS:
        assert unicodedata.is_normalized("NFC", text)
        for tok in (built_tok, saved_tok):
            ids = tok(text, add_special_tokens=False).input_ids
            assert tok.decode(ids) == text, (fam, text)
            assert tok.unk_token_id is None or fam == "gpt2" or tok.unk_token_id not in ids
        # the folder's tokenizer (AutoTokenizer) is the one build_tokenizer made
        assert saved_tok(text).input_ids == built_tok(text).input_ids, (fam, text)
    # text that looks like a special token is not one; a real special token is a single id
    assert "<|fake|>" not in saved_tok.convert_ids_to_tokens(saved_tok("<|fake|>", add_special_tokens=False).input_ids)
    eos = saved_tok.eos_token
    assert saved_tok(f"a{eos}b", add_special_tokens=False).input_ids[1:-1] == [saved_tok.eos_token_id]


def test_tokenizer_is_deterministic():
    for fam in FAMILIES:
        a, b = build_tokenizer(fam), build_tokenizer(fam)
        assert a.backend_tokenizer.to_str() == b.backend_tokenizer.to_str()


def test_special_token_conventions(hf_tokenizers, fam):
    bos, eos, pad, adds_bos = CONVENTIONS[fam]
    for tok in (build_tokenizer(fam), hf_tokenizers[fam]):
        assert (tok.bos_token, tok.eos_token, tok.pad_token) == (bos, eos, pad)
        ids = tok("hi").input_ids
        assert (ids[0] == tok.bos_token_id) == adds_bos, (fam, ids)
        assert ids[-1] != tok.eos_token_id
        assert tok("hi", add_special_tokens=False).input_ids == ids[int(adds_bos):]
    if fam == "gpt2":
        assert hf_tokenizers[fam].unk_token == "<|endoftext|>"
    if fam == "qwen2":
        assert hf_tokenizers[fam].bos_token_id is None


def test_chat_templates(hf_tokenizers, fam):
    tok = hf_tokenizers[fam]
    msgs = [{"role": "user", "content": "Hi"}]
    if fam not in CHAT:
        assert tok.chat_template is None
        with pytest.raises(ValueError):
            build_tokenizer(fam, chat_template=True)
        return
    prompt = tok.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
    assert prompt.endswith(GENERATION_PROMPT_END[fam]) and "Hi" in prompt
    bare = tok.apply_chat_template(msgs, tokenize=False, add_generation_prompt=False)
    assert bare.endswith(GENERATION_PROMPT_END[fam]) == (fam == "mistral")  # [/INST] is the prompt
    if tok.bos_token is not None:
        assert prompt.startswith(tok.bos_token)
    # tokenized: the template's BOS is not doubled, and its markers are single special tokens
    ids = tok.apply_chat_template(msgs, tokenize=True, add_generation_prompt=True, return_dict=True)["input_ids"]
    assert tok.decode(ids) == prompt
    if tok.bos_token is not None:
        assert ids[0] == tok.bos_token_id and ids[1] != tok.bos_token_id
    for marker in tok.extra_special_tokens:
        if marker in prompt:
            assert tok.convert_tokens_to_ids(marker) in ids
    system = [{"role": "system", "content": "Be brief."}, *msgs]
    if fam == "gemma2":
        with pytest.raises(Exception, match="System role not supported"):
            tok.apply_chat_template(system, tokenize=False)
    else:
        assert "Be brief." in tok.apply_chat_template(system, tokenize=False, add_generation_prompt=True)
    assert build_tokenizer(fam, chat_template=False).chat_template is None


def test_chat_template_option(tmp_path):
    plain = build_tiny_model("llama", tmp_path / "plain", chat_template=False, n_layers=1)
    assert not (plain / "chat_template.jinja").exists()
    custom = build_tokenizer("llama")
    custom.chat_template = "{% for m in messages %}{{ m['content'] }}{% endfor %}"
    kept = build_tiny_model("llama", tmp_path / "kept", tokenizer=custom, n_layers=1)
    assert (kept / "chat_template.jinja").read_text() == custom.chat_template
    assert custom.chat_template.startswith("{% for")  # the caller's tokenizer is left as it was


def test_weights_depend_only_on_seed(tmp_path):
    state = torch.random.get_rng_state()
    a = load_file(build_tiny_model("qwen2", tmp_path / "a", seed=1, n_layers=1) / "model.safetensors")
    b = load_file(build_tiny_model("qwen2", tmp_path / "b", seed=1, n_layers=1) / "model.safetensors")
    c = load_file(build_tiny_model("qwen2", tmp_path / "c", seed=2, n_layers=1) / "model.safetensors")
    assert torch.equal(torch.random.get_rng_state(), state)  # the global RNG is left alone
    assert a.keys() == b.keys() == c.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["model.embed_tokens.weight"], c["model.embed_tokens.weight"])
    assert a["model.embed_tokens.weight"].std() > 0.05  # initializer_range=0.1, not HF's 0.02


@pytest.mark.parametrize("family", ["gpt2", "gemma2"])
def test_pair(tmp_path, family):
    base, post = build_tiny_pair(family, tmp_path, seed=3, noise=0.05, n_layers=2)
    assert (base, post) == (tmp_path / "base", tmp_path / "post")
    for name in ("tokenizer.json", "tokenizer_config.json", "config.json", "chat_template.jinja"):
        assert (base / name).exists() == (post / name).exists() == (name != "chat_template.jinja" or family != "gpt2")
        if (base / name).exists():
            assert (base / name).read_bytes() == (post / name).read_bytes(), name
    wb, wp = load_file(base / "model.safetensors"), load_file(post / "model.safetensors")
    assert wb.keys() == wp.keys()
    rel = [(wp[k] - wb[k]).norm() / wb[k].norm() for k in wb if wb[k].std() > 0]
    assert all(0.02 < r < 0.1 for r in rel), rel
    _, again = build_tiny_pair(family, tmp_path / "again", seed=3, noise=0.05, n_layers=2)
    again = load_file(again / "model.safetensors")
    assert all(torch.equal(again[k], wp[k]) for k in wp)


def test_unknown_family(tmp_path):
    with pytest.raises(ValueError, match="unknown family"):
        build_tokenizer("opt")
    with pytest.raises(ValueError, match="unknown family"):
        build_tiny_model("opt", tmp_path / "x")
