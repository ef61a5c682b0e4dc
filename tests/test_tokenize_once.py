"""Each section tokenises each of its prompt sets once: every pass over a set (activations, scores,
steered generations under every intervention, loss checks, probes) reads the same
:class:`interp.tokens.Tokenized`."""

from __future__ import annotations

import collections
import json

import pytest

import interp
from interp.compare import compare


@pytest.fixture
def counted(monkeypatch):
    """Counts of each text the toolkit's tokenisation (:func:`interp.tokens.encode`: no special tokens, with
    offsets) hands the tokenizer; other calls (a reply's first token, a generated text's tokens) are not
    prompt-set passes."""
    pair = interp.load_pair()
    cls = type(pair.tokenizer)
    original = cls.__call__
    counts: collections.Counter = collections.Counter()

    def call(self, text, *args, **kwargs):
        if kwargs.get("return_offsets_mapping") and kwargs.get("add_special_tokens") is False:
            counts.update([text] if isinstance(text, str) else list(text))
        return original(self, text, *args, **kwargs)

    monkeypatch.setattr(cls, "__call__", call)
    return pair, counts


@pytest.mark.parametrize("section", ["truth", "refusal", "language", "snmf"])
def test_each_prompt_set_is_tokenised_once_per_section(counted, section, tmp_path):
    pair, counts = counted
    compare(pair=pair, concepts=[section], progress=False)
    assert counts, "nothing was tokenised"
    again = {t[:60]: n for t, n in counts.items() if n > 1}
    assert not again, f"{len(again)} of {len(counts)} texts tokenised more than once, e.g. {list(again.items())[:5]}"


def test_a_user_concept_tokenises_its_prompts_once(counted, tmp_path):
    pair, counts = counted
    pos = [f"I am delighted with the {w}." for w in ("garden", "city", "river", "book", "song", "meal", "house", "town")]
    neg = [f"I am disgusted by the {w}." for w in ("garden", "city", "river", "book", "song", "meal", "house", "town")]
    files = []
    for name, rows in (("pos", pos), ("neg", neg)):
        path = tmp_path / f"{name}.jsonl"
        path.write_text("".join(json.dumps({"text": t}) + "\n" for t in rows))
        files.append(path)
    compare(pair=pair, concepts=[], user_concepts={"mood": files}, progress=False)
    assert set(pos + neg) <= set(counts)
    again = {t: n for t, n in counts.items() if n > 1}
    assert not again, again


def test_tokenized_prompts_give_every_pass_the_same_numbers_as_texts(tiny_pairs):
    """A pass fed a Tokenized returns exactly what it returns for the texts; subsets and joins keep each
    prompt's encoding."""
    from interp.generation import next_token_logits
    from interp.tokens import encode, tokenize
    from steering import generate
    from steering.metrics import heldout_loss

    pair = tiny_pairs["llama"]
    texts = ["The city of Paris is in France.", "Madrid is in", "Rome, the capital of Italy, is old.", "Oslo"]
    toks = tokenize(pair.post, texts)
    assert toks.texts == tuple(texts) and [e.ids for e in toks.encodings] == [e.ids for e in encode(pair.tokenizer, texts)]
    assert (next_token_logits(pair.post, toks, batch_size=3) == next_token_logits(pair.post, texts, batch_size=3)).all()
    assert heldout_loss(pair.post, toks) == heldout_loss(pair.post, texts)
    assert generate(pair.post, toks, max_new_tokens=3) == generate(pair.post, texts, max_new_tokens=3)
    odd = toks.select([False, True, False, True])
    assert odd.texts == (texts[1], texts[3]) and odd.encodings == (toks.encodings[1], toks.encodings[3])
    assert (toks.select([2]) + odd).texts == (texts[2], texts[1], texts[3])
    rows = [r for r, _ in toks.batches(3, pad_id=0, by_length=True)]
    assert sorted(i for r in rows for i in r) == [0, 1, 2, 3] and len(rows) == 2


def test_tokenized_prompts_from_another_tokenizer_or_policy_are_refused(tiny_pairs):
    from interp.tokens import as_tokenized, tokenize

    pair = tiny_pairs["llama"]
    toks = tokenize(pair.post, ["Madrid is in Spain."])
    with pytest.raises(ValueError, match="bos='never'"):
        as_tokenized(pair.post, toks, bos="never")
    other = tiny_pairs["gpt2"]
    with pytest.raises(ValueError, match="tokenised by a tokenizer of"):
        as_tokenized(other.post, toks)
    with pytest.raises(ValueError, match="a mask of 2 rows for 1 prompts"):
        toks.select([True, False])
    with pytest.raises(ValueError, match="other texts"):
        interp.collect(pair.post, ["Rome is in Italy."], tokens=toks, progress=False)
