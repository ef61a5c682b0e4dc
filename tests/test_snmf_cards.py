"""The SNMF features table: distinct shown contexts, similar features named, measured neuron counts, byte tokens."""

import re
from types import SimpleNamespace

import numpy as np
import pytest

from interp.collection import collect_tokens
from interp.compare.snmf import SHOWN_CHARS, _feature_rows, _neurons_holding, describe_features, shown_context
from interp.models import tokenizer_of
from interp.tokens import display_token

BYTE = re.compile(r"<0x([0-9A-F]{2})>")


def _bytes_of(shown: str) -> bytes:
    """The bytes a :func:`display_token` string stands for: ``<0xNN>`` as the byte, other text as its UTF-8."""
    out, last = b"", 0
    for m in BYTE.finditer(shown):
        out += shown[last:m.start()].encode() + bytes([int(m.group(1), 16)])
        last = m.end()
    return out + shown[last:].encode()


def _tokenizer(name):
    from interp.testing import build_tokenizer

    if name == "organism":
        from transformers import AutoTokenizer

        from interp.organism import paths

        return AutoTokenizer.from_pretrained(paths()[1])
    return build_tokenizer(name)


@pytest.mark.parametrize("name", ["organism", "gpt2", "qwen2"])
def test_byte_tokens_are_shown_as_their_bytes(name):
    """Characters split across byte-level BPE tokens: each token reads without U+FFFD, whole tokens read as
    decoded, and the shown tokens of a text spell out its UTF-8 bytes exactly (so no two byte tokens read alike)."""
    tok = _tokenizer(name)
    text = "Ünïcödé 東京 🙂 Ελληνικά señor"
    ids = tok(text, add_special_tokens=False)["input_ids"]
    split = [i for i in ids if "\ufffd" in tok.decode([i])]
    assert split  # some tokens hold part of a character, else this checks nothing
    shown = [display_token(tok, i) for i in ids]
    assert not any("\ufffd" in s for s in shown)
    assert all(BYTE.search(display_token(tok, i)) for i in split)
    assert all(s == tok.decode([i]) for s, i in zip(shown, ids) if i not in split)
    assert b"".join(_bytes_of(s) for s in shown) == text.encode()
    every = [i for i in range(len(tok)) if "\ufffd" in tok.decode([i])]
    assert len({display_token(tok, i) for i in every}) == len(every)  # one reading per partial token


@pytest.mark.parametrize("name", ["organism", "gpt2"])
def test_newline_and_tab_tokens_are_shown_escaped(name):
    """A token of whitespace a table would show as a blank reads as its escape."""
    tok = _tokenizer(name)
    ids = tok("a\n\tb", add_special_tokens=False)["input_ids"]
    shown = "".join(display_token(tok, i) for i in ids)
    assert shown == "a\\n\\tb" and "\n" not in shown


def test_byte_fallback_tokens_are_shown_as_their_entries():
    """A SentencePiece-style byte-fallback token (entry ``<0xE6>``, decoded U+FFFD) reads as its entry."""
    import transformers
    from tokenizers import Tokenizer, decoders, models

    vocab = {"<unk>": 0, "a": 1, **{f"<0x{b:02X}>": 2 + b for b in range(256)}}
    backend = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token="<unk>", byte_fallback=True))
    backend.decoder = decoders.Sequence([decoders.ByteFallback(), decoders.Fuse()])
    tok = transformers.PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="<unk>")
    ids = tok("a東", add_special_tokens=False)["input_ids"]
    assert [tok.decode([i]) for i in ids] == ["a", "\ufffd", "\ufffd", "\ufffd"]
    assert [display_token(tok, i) for i in ids] == ["a", "<0xE6>", "<0x9D>", "<0xB1>"]


def test_neurons_holding_a_share_of_the_weight():
    w = np.zeros(50)
    w[[3, 7, 11, 20]] = [5.0, -3.0, 1.0, 1.0]  # L1 10: 5 + 3 + 1 = 9 is 90%
    assert _neurons_holding(w) == 3
    assert _neurons_holding(w, 0.8) == 2 and _neurons_holding(w, 0.5) == 1 and _neurons_holding(w, 1.0) == 4
    assert _neurons_holding(np.ones(10)) == 9 and _neurons_holding(np.zeros(5)) == 0


@pytest.fixture(scope="module")
def planted(tiny_pairs):
    """A planted SNMF-like fit on the tiny Llama's tokens: known neuron weights, features 0 and 1 with the
    same coefficient column, feature 2 with another."""
    model = tiny_pairs["llama"].post
    texts = ["the cat sat on the mat", "a dog ran in the park today", "one bird flew over the lake",
             "we ate rice and beans", "the sun is hot"]
    tokens = collect_tokens(model, texts, "mlp_post", layer=1, progress=False)
    d_mlp = int(model.cfg.d_mlp)
    W = np.zeros((3, d_mlp))
    W[0, :4] = [5.0, -3.0, 1.0, 1.0]  # 90% of |weight| in 3 neurons
    W[1, 10:20] = 1.0  # in 9
    W[2, [5, 30]] = [-8.0, 2.0]  # 80% in one, 90% needs both
    rng = np.random.default_rng(0)
    G = np.zeros((len(tokens), 3))
    G[:, 0] = G[:, 1] = rng.random(len(tokens))
    G[:, 2] = rng.random(len(tokens)) ** 4
    cards = describe_features(model, SimpleNamespace(components_=W), tokens, 1, G, top_k=4)
    return cards, W, G


def test_feature_table_measures_neurons_and_names_similar_features(planted):
    cards, W, G = planted
    rows = {r[0]: r for r in _feature_rows(cards, W, G)}
    assert [rows[j][4] for j in range(3)] == [3, 9, 2]
    assert rows[0][5].startswith("0: +5.00, 1: -3.00")
    assert rows[0][6] == "1: 1.00" and rows[1][6] == "0: 1.00"  # identical coefficient columns
    cos = G[:, 2] @ G[:, 0] / np.linalg.norm(G[:, 2]) / np.linalg.norm(G[:, 0])
    assert rows[2][6] in (f"0: {cos:.2f}", f"1: {cos:.2f}") and cos < 0.99
    assert rows[0][7] == "1 (3 of 3)" and rows[1][7] == "0 (3 of 3)"  # the same top tokens, shown as shared
    assert rows[0][2] == rows[1][2]


def test_single_feature_and_dead_feature_have_no_similar_one(planted):
    cards, W, G = planted
    dead = G.copy()
    dead[:, 2] = 0
    rows = {r[0]: r for r in _feature_rows(cards, W, dead)}
    assert rows[2][6] == "none" and rows[0][6] == "1: 1.00"
    assert _feature_rows(cards[:1], W[:1], G[:, :1])[0][6] == "none"


def test_top_contexts_read_differently_as_shown(tiny_pairs):
    """Three prompts that differ only more than :data:`SHOWN_CHARS` characters before their last token read the
    same in the table: only the highest-ranked is kept, the next are the next by coefficient that read
    differently, and the order stays by coefficient."""
    model = tiny_pairs["llama"].post
    tail = " went to the market to buy some fresh bread"
    assert len(tail) > SHOWN_CHARS
    texts = [f"{name}{tail}" for name in ("Alice", "Bob", "Carol")] + ["the dog ran in the park", "one bird flew"]
    tokens = collect_tokens(model, texts, "mlp_post", layer=1, progress=False)
    last = [int(np.flatnonzero(tokens.prompt.numpy() == p)[-1]) for p in range(len(texts))]
    G = np.full((len(tokens), 1), 0.01)
    G[last, 0] = [10.0, 9.0, 8.0, 7.0, 6.0]
    tok = tokenizer_of(model)
    full = [tokens.context(r, tok, before=40) for r in last[:3]]
    assert len(set(full)) == 3  # the contexts differ in full ...
    assert len({shown_context(b, t) for b, t in full}) == 1  # ... but not as shown
    W = np.zeros((1, int(model.cfg.d_mlp)))
    W[0, 0] = 1.0
    card, = describe_features(model, SimpleNamespace(components_=W), tokens, 1, G, top_k=3, context=40)
    assert [c for _, _, c in card.top_tokens] == [10.0, 7.0, 6.0]
    shown = [shown_context(b, t) for b, t, _ in card.top_tokens]
    assert shown[0] == shown_context(*full[0]) and len(set(shown)) == 3


def test_a_shown_context_is_cut_at_a_words_start():
    """A context longer than SHOWN_CHARS keeps its last words whole, the cut marked; a short one is shown whole; one
    without whitespace (CJK) is cut where the characters fall."""
    long = "The quick brown fox jumped over the lazy"
    shown = shown_context(long, " dog")
    assert shown == "… fox jumped over the lazy[ dog]" and len(shown) - len("…[ dog]") <= SHOWN_CHARS
    assert long.endswith(shown[1:-len("[ dog]")])
    assert shown_context("on the", " mat") == "on the[ mat]"
    cjk = "東京は日本の首都です" * 4
    assert shown_context(cjk, "x") == f"…{cjk[-SHOWN_CHARS:]}[x]"
