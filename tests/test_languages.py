"""Language token sets and the effective rank."""

import pytest
import torch

from interp.compare.language import LanguageTokens, effective_rank


def test_language_tokens_are_exclusive_and_carry_next_token_mass(tiny_pairs):
    tok = tiny_pairs["llama"].tokenizer
    texts = {"en": ["the cat is on the table", "the dog sleeps"], "fr": ["le chat est sur la table", "le chien dort"]}
    own = LanguageTokens.from_texts(tok, texts)
    assert not own.sets["en"] & own.sets["fr"]
    probs = torch.zeros(2, len(tok))
    probs[0, sorted(own.sets["fr"])[0]] = 0.7
    probs[1, sorted(own.sets["en"])[0]] = 1.0
    torch.testing.assert_close(own.share(probs, "fr"), torch.tensor([0.7, 0.0]))
    with pytest.raises(ValueError, match="no token belongs to"):
        LanguageTokens.from_texts(tok, {"en": ["the cat"], "xx": ["the cat"]})


def test_effective_rank_and_eigengap():
    rank1 = torch.outer(torch.arange(1.0, 6.0), torch.ones(4))
    r, gap = effective_rank(rank1 + 1e-9 * torch.randn(5, 4))
    assert r == pytest.approx(1.0, abs=1e-3) and gap > 1e5
    r, gap = effective_rank(torch.eye(4))
    assert r == pytest.approx(4.0) and gap == pytest.approx(1.0)
