"""Metrics against reference computations."""

from __future__ import annotations

import pytest
import torch

from interp.generation import next_token_logits
from steering import Add, SteeringVector
from steering.metrics import (
    heldout_loss,
    is_refusal,
    kl_divergence,
    refusal_rate,
    refusal_score,
    refusal_token_ids,
)

PROMPTS = ["The cat sat on the mat.", "Hi", "A longer prompt with several more words in it."]


def test_refusal_phrases():
    assert is_refusal("I'm sorry, but I can't help.") and is_refusal("  i cannot do that")
    assert not is_refusal("Sure. First, get what you need.")
    assert not is_refusal("x" * 80 + " I cannot")  # only near the start by default
    assert is_refusal("x" * 80 + " I cannot", within=None)
    assert refusal_rate(["I cannot.", "Sure.", "Sorry, no.", "Yes"]) == 0.5
    assert refusal_rate(["Nope"], phrases=["nope"]) == 1.0
    with pytest.raises(ValueError, match="no generations"):
        refusal_rate([])


def test_refusal_tokens_drop_those_shared_with_compliance(tiny_pairs):
    tok = tiny_pairs["llama"].tokenizer
    first = lambda s: tok(s, add_special_tokens=False)["input_ids"][0]  # noqa: E731
    assert refusal_token_ids(tok, ["I cannot", "I am sorry"]) == [first("I cannot")]
    shared = refusal_token_ids(tok, ["I cannot", "Sorry"], compliant=["Sorry"])
    assert shared == [first("I cannot")]
    with pytest.raises(ValueError, match="also starts a compliant reply"):
        refusal_token_ids(tok, ["Sorry"], compliant=["Sorry"])


def test_refusal_score_is_the_log_odds_of_refusal_tokens(tiny_pairs):
    model = tiny_pairs["llama"].post
    ids = [5, 17, 40]
    p = next_token_logits(model, PROMPTS).double().softmax(-1)[:, ids].sum(-1)
    expected = (p.log() - (1 - p).log()).float()
    torch.testing.assert_close(refusal_score(model, PROMPTS, ids), expected, atol=1e-4, rtol=1e-4)
    with pytest.raises(ValueError, match="refusal_ids is empty"):
        refusal_score(model, PROMPTS, [])


def test_kl_is_zero_unsteered_and_matches_the_definition(tiny_pairs):
    model = tiny_pairs["llama"].post
    assert kl_divergence(model, PROMPTS, None).abs().max() < 1e-6
    v = SteeringVector(torch.randn(1, int(model.cfg.d_model)) * 3, (1,))
    kl = kl_divergence(model, PROMPTS, Add(v))
    from steering import add

    p = next_token_logits(model, PROMPTS).double().log_softmax(-1)
    with add(model, v):
        q = next_token_logits(model, PROMPTS).double().log_softmax(-1)
    expected = torch.nn.functional.kl_div(q, p, log_target=True, reduction="none").sum(-1).float()
    torch.testing.assert_close(kl, expected, atol=1e-5, rtol=1e-4)
    assert (kl > 0).all()


def test_heldout_loss_equals_hugging_face_loss(tiny_dirs):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    import interp

    base_dir, _ = tiny_dirs["llama"]
    model = interp.load_model(base_dir, device="cpu")
    hf = AutoModelForCausalLM.from_pretrained(base_dir).eval()
    tok = AutoTokenizer.from_pretrained(base_dir)
    total, count = 0.0, 0
    for text in PROMPTS:
        ids = tok(text, return_tensors="pt")["input_ids"]
        if ids[0, 0] != tok.bos_token_id:
            ids = torch.cat([torch.tensor([[tok.bos_token_id]]), ids], 1)
        with torch.no_grad():
            out = hf(ids, labels=ids)
        n = ids.shape[1] - 1
        total += float(out.loss) * n
        count += n
    assert heldout_loss(model, PROMPTS) == pytest.approx(total / count, rel=1e-4)


def test_repetition_rate_is_welleck_seq_rep_n():
    from steering.metrics import repetition_rate

    assert repetition_rate([1, 2, 3, 4, 5, 6], 4) == 0.0
    assert repetition_rate([7] * 12, 4) == pytest.approx(1 - 1 / 9)  # 9 four-grams, one distinct
    assert repetition_rate([1, 2, 1, 2, 1, 2], 2) == pytest.approx(1 - 2 / 5)  # (1,2) and (2,1) among 5
    assert repetition_rate([1, 2, 3], 4) != repetition_rate([1, 2, 3], 4)  # NaN: no 4-gram
    with pytest.raises(ValueError, match="n must be an int >= 1"):
        repetition_rate([1, 2], 0)


def test_continuation_perplexity_is_the_exp_mean_nll_of_the_generated_tokens():
    import math

    import interp
    from steering import generate
    from steering.generation import Generation
    from steering.metrics import continuation_perplexity

    model = interp.load_pair().post
    gens = generate(model, ["The city of Lyon is in", "It was a"], max_new_tokens=5, stop_at_eos=False,
                    return_details=True)
    got = continuation_perplexity(model, gens)
    for g, ppl in zip(gens, got):  # a reference: one token at a time through next_token_logits
        prompt = interp.tokens.tokenize(model, [g.prompt]).encodings[0].ids
        ids, nll = list(prompt), 0.0
        for t in g.token_ids:
            logp = model(torch.tensor([ids]))[0, -1].float().log_softmax(-1)
            nll -= float(logp[t])
            ids.append(t)
        assert ppl == pytest.approx(math.exp(nll / len(g.token_ids)), rel=1e-4)
        assert ppl < 20  # greedy text is likely under its own model
    assert math.isnan(continuation_perplexity(model, [Generation("It was a", "", ())])[0])
    with pytest.raises(TypeError, match="Generation records"):
        continuation_perplexity(model, ["a plain string"])


LANGS = ("en", "fr", "de", "es")


def test_language_of_reads_real_short_text_and_refuses_what_has_no_language():
    from steering.metrics import language_of

    # the continuations the own-token classifier got wrong (0 French) or scored on a loop alone
    assert language_of("est en Allemagne, près de", LANGS) == "fr"
    assert language_of("est au dort est au", LANGS) == "fr"  # French, and a loop: repetition_rate's question
    assert [language_of(t, LANGS) for t in ("ist im Garten.", "está en el coche.", "is on the table.")] == [
        "de", "es", "en"]
    assert language_of("12 34", LANGS) is None and language_of("", LANGS) is None  # no letter
    assert language_of("Sure.alse.alse", LANGS) is None  # no language reaches 0.5
    assert language_of("Sure.alse.alse", LANGS, min_probability=0.0) is not None
    with pytest.raises(ValueError, match=r"\['english'\] not among langid's"):
        language_of("the cat", ("en", "english"))
    from steering.metrics import check_language_codes

    with pytest.raises(ValueError, match=r"\['english'\] not among langid's"):
        check_language_codes(("en", "english"))
    check_language_codes(LANGS)
    with pytest.raises(ValueError, match="min_probability must be in"):
        language_of("the cat", LANGS, min_probability=1.5)


def test_language_of_identifies_held_out_human_translations():
    pytest.importorskip("django")
    pytest.importorskip("babel")
    from interp.datasets._parallel import LANGUAGES, django_parallel
    from steering.metrics import language_of

    test = django_parallel("test")
    for key, limit in (("text", 1.0), ("opening", 0.9)):  # whole messages; their first three words
        for k, lang in enumerate(LANGUAGES):
            texts = [t if key == "text" else m["opening"] for t, y, m in zip(test.texts, test.labels, test.meta)
                     if y == k]
            hits = sum(language_of(t, LANGUAGES) == lang for t in texts)
            assert len(texts) >= 20 and hits / len(texts) >= limit, (key, lang, hits, len(texts))


def test_fluency_catches_short_loops_that_seq_rep_4_misses():
    from steering.metrics import is_fluent, longest_token_run, repetition_rate

    loop = [1, 2, 3, 4, 5, 6, 6, 6, 6, 7, 6]  # "city of Herakow to to to to k to": no 4-gram repeats
    assert repetition_rate(loop, 4) == 0.0 and longest_token_run(loop) == 4 and not is_fluent(loop)
    assert is_fluent([1, 2, 2, 3, 4, 5]) and longest_token_run([1, 2, 2, 3]) == 2  # a doubled word is text
    assert not is_fluent([5, 5, 5])  # "est est est"
    assert not is_fluent([1, 2, 3, 4] * 3)  # seq-rep-4 5/9 > 0.5
    assert is_fluent([]) and is_fluent([7]) and longest_token_run([]) == 0
