"""SNMF feature description: logit lens against the Hugging Face weights, top tokens in context."""

import numpy as np
import pytest
import torch

import interp
from interp.collection import collect_tokens
from interp.compare.snmf import describe_features, logit_lens
from probes import SNMF


def _rms(x, weight, eps, gemma):
    """RMSNorm written out: x / sqrt(mean(x^2) + eps) * g, with Gemma's gain 1 + w."""
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * ((1 + weight) if gemma else weight)


@pytest.mark.parametrize("family", ["llama", "gemma2", "gpt2"])
def test_logit_lens_goes_through_the_post_mlp_and_final_norms(tiny_dirs, family):
    """f W_out, then Gemma's post-feedforward norm, then the final norm (less its value at 0), then W_U: with
    random norm gains, against the Hugging Face weights and the norms written out."""
    from transformers import AutoModelForCausalLM

    base_dir, _ = tiny_dirs[family]
    model = interp.load_model(base_dir, device="cpu")
    hf = AutoModelForCausalLM.from_pretrained(base_dir)
    g = torch.Generator().manual_seed(0)
    norms = [model.ln_final] + ([model.blocks[1].ln2_post] if family == "gemma2" else [])
    with torch.no_grad():  # random gains (and biases) so that a norm left out shows
        for norm in norms:
            for param in norm.original_component.parameters():
                param.copy_(torch.randn(param.shape, generator=g) * 0.5 + (0.0 if family == "gemma2" else 1.0))
    d_mlp = int(model.cfg.d_mlp)
    feats = torch.randn(3, d_mlp, generator=g)
    lens = logit_lens(model, 1, feats.numpy())
    if family == "gpt2":
        W_out, W_U = hf.transformer.h[1].mlp.c_proj.weight.detach(), hf.lm_head.weight.detach().T
        c = feats @ W_out
        ln = model.ln_final.original_component
        centred = c - c.mean(-1, keepdim=True)
        normed = centred * torch.rsqrt(centred.pow(2).mean(-1, keepdim=True) + ln.eps) * ln.weight.detach()
    else:
        layers = hf.model.layers
        c = feats @ layers[1].mlp.down_proj.weight.detach().T
        eps, gemma = hf.config.rms_norm_eps, family == "gemma2"
        if gemma:
            c = _rms(c, model.blocks[1].ln2_post.original_component.weight.detach(), eps, True)
        normed = _rms(c, model.ln_final.original_component.weight.detach(), eps, gemma)
        W_U = hf.lm_head.weight.detach().T
    torch.testing.assert_close(lens, normed @ W_U, atol=1e-4, rtol=1e-4)


def test_collect_tokens_skips_bos_and_padding_and_describes_features(tiny_pairs):
    pair = tiny_pairs["llama"]
    texts = ["the cat sat on the mat", "a dog", "birds fly high over the hills today"]
    tokens = collect_tokens(pair.post, texts, "mlp_post", 1, batch_size=2, progress=False)
    tok = pair.tokenizer
    n_real = sum(len(tok(t)["input_ids"]) - 1 for t in texts)  # the tokenizer adds one BOS
    assert len(tokens) == n_real and tokens.X.shape[1] == pair.post.cfg.d_mlp
    assert (tokens.token_ids != tok.bos_token_id).all()
    # a row equals the same token read from a single-prompt run
    alone = collect_tokens(pair.post, texts[2:], "mlp_post", 1, progress=False)
    torch.testing.assert_close(tokens.X[tokens.prompt == 2], alone.X, atol=1e-5, rtol=1e-5)
    est = SNMF(4, sparsity=0.2, random_state=0, max_iter=30)
    G = est.fit_transform(tokens.X)
    cards = describe_features(pair.post, est, tokens, 1, G, top_k=3)
    assert len(cards) == 4 and all(len(c.top_tokens) == 3 and len(c.logit_lens) == 8 for c in cards)
    best_row = int(np.argmax(G[:, 0]))
    assert cards[0].top_tokens[0][1] == tok.decode([int(tokens.token_ids[best_row])])
    assert cards[0].top_tokens[0][2] == float(G[best_row, 0])


def test_tokens_of_every_layer_in_one_pass_equal_one_layer_at_a_time(tiny_pairs):
    from interp.collection import collect_tokens_by_layer

    model = tiny_pairs["qwen2"].post
    texts = ["the cat sat on the mat", "a dog", "birds fly high"]
    every = collect_tokens_by_layer(model, texts, "mlp_post", batch_size=2, progress=False)
    assert sorted(every) == list(range(int(model.cfg.n_layers)))
    for layer, tokens in every.items():
        one = collect_tokens(model, texts, "mlp_post", layer, progress=False)
        torch.testing.assert_close(tokens.X, one.X, atol=1e-5, rtol=1e-5)
        assert torch.equal(tokens.token_ids, one.token_ids) and torch.equal(tokens.prompt, one.prompt)


def test_tokens_grouped_by_length_come_back_in_prompt_order(tiny_pairs):
    """Batches group prompts of similar length; the rows are still every prompt's tokens in prompt order,
    equal to one-prompt batches."""
    from interp.collection import collect_tokens_by_layer
    from interp.tokens import encode

    model = tiny_pairs["llama"].post
    texts = [("word " * (9 if i % 2 else 1)) + f"number {i}" for i in range(7)]
    grouped = collect_tokens_by_layer(model, texts, "mlp_post", [0, 2], batch_size=3, progress=False)
    alone = collect_tokens_by_layer(model, texts, "mlp_post", [0, 2], batch_size=1, progress=False)
    encs = encode(model.interp_tokenizer, texts)
    expected = [t for e in encs for t in e.ids[(1 if e.has_bos else 0):]]
    for layer in (0, 2):
        torch.testing.assert_close(grouped[layer].X, alone[layer].X, atol=1e-5, rtol=1e-5)
        assert grouped[layer].token_ids.tolist() == expected
        assert grouped[layer].prompt.tolist() == sorted(grouped[layer].prompt.tolist())
        assert torch.equal(grouped[layer].position, alone[layer].position)


def test_tokens_of_several_sites_in_one_pass_and_their_means_equal_collect(tiny_pairs):
    """One pass reads every token at two sites: each equals its own pass, and the per-prompt means of
    resid_post equal collect(positions="mean") (BOS left out of both)."""
    from interp.collection import collect_tokens_by_layer, collect_tokens_by_site, token_means

    model = tiny_pairs["gemma2"].post
    texts = ["le chat noir dort", "the cat", "der Hund schläft heute sehr lange", "el gato"]
    both = collect_tokens_by_site(model, texts, ["resid_post", "mlp_post"], batch_size=2, progress=False)
    for site in ("resid_post", "mlp_post"):
        alone = collect_tokens_by_layer(model, texts, site, batch_size=2, progress=False)
        for layer, tokens in alone.items():
            torch.testing.assert_close(both[site][layer].X, tokens.X, atol=1e-5, rtol=1e-5)
            assert torch.equal(both[site][layer].prompt, tokens.prompt)
    means = token_means(both["resid_post"], len(texts))
    ref = interp.collect(model, texts, "resid_post", positions="mean", batch_size=1, progress=False)["resid_post"]
    assert means.shape == ref.shape == (4, int(model.cfg.n_layers), int(model.cfg.d_model))
    torch.testing.assert_close(means, ref, atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match=r"prompts \[4\] have no token rows"):
        token_means(both["resid_post"], 5)
    with pytest.raises(ValueError, match="sites must name at least one site, each once"):
        collect_tokens_by_site(model, texts, ["mlp_post", "mlp_post"], progress=False)


@pytest.mark.parametrize("family", ["llama", "gemma2"])
def test_token_contexts_are_whole_characters(tiny_pairs, family):
    """Accented and CJK text splits characters across byte tokens: every row's context and token decode without a
    replacement character, and the token is the character its bytes belong to."""
    from interp.models import tokenizer_of

    model = tiny_pairs[family].post
    tok = tokenizer_of(model)
    texts = ["La ville de Séville est en España.", "東京は日本の首都です。", "Österreich"]
    t = collect_tokens(model, texts, "mlp_post", layer=1, progress=False)
    split = sum("\ufffd" in tok.decode([int(i)]) for i in t.token_ids)
    assert split > 0  # some tokens are parts of characters, else this checks nothing
    for r in range(len(t.token_ids)):
        before, token = t.context(r, tok, before=4)
        assert "\ufffd" not in before + token and token
        assert before + token in texts[int(t.prompt[r])]


def test_feature_cards_show_distinct_contexts(tiny_pairs):
    model = tiny_pairs["llama"].post
    texts = ["the cat sat on the mat"] * 6 + ["a dog ran in the park", "one bird flew over the lake"]
    tokens = collect_tokens(model, texts, "mlp_post", layer=1, progress=False)
    snmf = SNMF(n_components=3, sparsity=0.5, random_state=0, max_iter=50).fit(tokens.X)
    for card in describe_features(model, snmf, tokens, 1, top_k=4):
        shown = [(b, t) for b, t, _ in card.top_tokens]
        assert len(shown) == len(set(shown)) == 4


def test_a_context_of_whole_words_starts_at_a_word(tiny_pairs):
    """whole_words: a context that does not reach the text's start is marked with … and starts at a word, never
    inside one; one that does reach it is the text itself."""
    from interp.models import tokenizer_of

    model = tiny_pairs["llama"].post
    tok = tokenizer_of(model)
    text = "the quick brown fox jumped over the extraordinarily lazy sleeping dog"
    t = collect_tokens(model, [text], "mlp_post", layer=1, progress=False)
    assert len(t) > 8
    for r in range(len(t)):
        plain, token = t.context(r, tok, before=3)
        whole, same = t.context(r, tok, before=3, whole_words=True)
        assert same == token
        if text.startswith(plain):  # reaches the start: unchanged
            assert whole == plain
        else:
            assert whole.startswith("…") and plain.endswith(whole[1:])
            dropped = plain[: len(plain) - len(whole) + 1]
            if dropped:  # the rest of a word, up to the whitespace before the next: what is kept starts a word
                assert not plain[0].isspace() and dropped[-1].isspace() and " " not in dropped.rstrip()
    assert [t.context(r, tok, before=3, whole_words=True)[0] for r in range(len(t))].count("…la") == 1  # "ily la"
