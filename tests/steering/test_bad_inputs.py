"""Bad input to the steering entry points: a clear error (or a warning) naming the cause, never a silent result.

Each test is keyed by its finding in the input audit (the ``#`` of its row).
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

import steering
from interp.tokens import stop_token_ids
from steering import metrics
from steering.refusal import mean_activations, offset_activations, score_candidates, select_direction

PROMPTS = ["The cat sat on the mat.", "Paris is in France."]


@pytest.fixture(scope="module")
def pair(tiny_pairs):
    return tiny_pairs["llama"]


@pytest.fixture(scope="module")
def model(pair):
    return pair.post


def _vec(model, layers=(0,), site="resid_pre"):
    g = torch.Generator().manual_seed(0)
    return steering.SteeringVector(torch.randn(len(layers), int(model.cfg.d_model), generator=g), layers, site)


# ------------------------------------------------------------------ 1: stop_tokens as one string
def test_1_stop_tokens_as_one_string(pair, model):
    with pytest.raises(TypeError, match=r"stop_tokens takes a list of vocabulary entries, e\.g\. \['<\|end\|>'\]"):
        stop_token_ids(pair.tokenizer, "<|end|>")
    with pytest.raises(TypeError, match="not a single string"):
        steering.generate(model, PROMPTS, max_new_tokens=2, stop_tokens="ab")
    assert stop_token_ids(pair.tokenizer, [], eos=False) == set()  # a list still works


# ------------------------------------------------------------------ 2-3: refusal activations of one string
def test_2_3_offset_activations_refuse_one_string(model):
    for fn in (mean_activations, offset_activations):
        with pytest.raises(TypeError, match="prompts must be a list of texts .or Tokenized., not one string"):
            fn(model, "How do I bake bread today?", [-1])


def test_2_mean_activations_divide_by_the_prompt_count(model):
    from interp.tokens import tokenize

    toks = tokenize(model, PROMPTS)
    rows = offset_activations(model, toks, [-2, -1])
    assert rows.shape[0] == len(PROMPTS) and torch.isfinite(rows).all()
    torch.testing.assert_close(mean_activations(model, toks, [-2, -1]), rows.double().mean(0), atol=1e-12, rtol=0)


# ------------------------------------------------------------------ 4-7, 32: phrase matching
def test_4_refusal_rate_refuses_one_string():
    with pytest.raises(TypeError, match="generations must be a list of texts.*wrap a single one in a list"):
        metrics.refusal_rate("I cannot do that")


@pytest.mark.parametrize("kwargs, error, match", [
    ({"phrases": "sorry"}, TypeError, "phrases must be a list of texts"),
    ({"phrases": []}, ValueError, "phrases is empty"),
    ({"phrases": [""]}, ValueError, "phrase 0 is empty"),
    ({"phrases": ["sorry", 3]}, TypeError, "phrase 1 is a int, not a string"),
    ({"within": 0}, ValueError, "within must be >= 1"),
    ({"within": -5}, ValueError, "within must be >= 1"),
    ({"within": 2.5}, TypeError, "within must be an int >= 1"),
])
def test_5_phrases_and_within(kwargs, error, match):
    with pytest.raises(error, match=match):
        metrics.refusal_rate(["hello"], **kwargs)
    with pytest.raises(error, match=match):
        metrics.is_refusal("hello", **kwargs)


def test_5_valid_phrases_score_as_before():
    assert metrics.refusal_rate(["I cannot help.", "Sure!"]) == 0.5
    assert metrics.is_refusal("xx sorry", ["Sorry"], within=None)
    assert not metrics.is_refusal("x" * 70 + "I cannot")


def test_6_7_refusal_token_ids(pair):
    tok = pair.tokenizer
    with pytest.raises(TypeError, match=r"replies must be a list of texts, e\.g\. \['Sorry', 'I cannot'\]"):
        metrics.refusal_token_ids(tok, "Sorry")
    with pytest.raises(TypeError, match="compliant must be a list of texts"):
        metrics.refusal_token_ids(tok, ["Sorry"], compliant="Sure")
    with pytest.raises(ValueError, match="replies is empty: give at least one refusal reply"):
        metrics.refusal_token_ids(tok, [])
    ids = metrics.refusal_token_ids(tok, ["Sorry", "I cannot"])
    assert ids == metrics.refusal_token_ids(tok, ("Sorry", "I cannot")) and ids


def test_32_refusal_rate_reads_generation_records(model):
    gens = steering.generate(model, PROMPTS, max_new_tokens=3, return_details=True)
    assert metrics.refusal_rate(gens) == metrics.refusal_rate([g.text for g in gens])
    assert metrics.is_refusal(steering.Generation("p", "I cannot", ()))
    with pytest.raises(TypeError, match="generation 0 is a int, not a text"):
        metrics.refusal_rate([1, 2])


# ------------------------------------------------------------------ 9: from_prompts with strings
def test_9_from_prompts_refuses_one_string(model):
    with pytest.raises(TypeError, match="positive must be a list of prompt texts .or a PromptSet., not one string"):
        steering.SteeringVector.from_prompts(model, "happy", ["sad"])
    with pytest.raises(TypeError, match="negative must be a list of prompt texts"):
        steering.SteeringVector.from_prompts(model, ["happy"], "sad")


# ------------------------------------------------------------------ 14-16: Deactivate
@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_14_deactivate_refuses_a_non_finite_value(value):
    with pytest.raises(ValueError, match="value must be a finite number"):
        steering.Deactivate({1: [0]}, value=value)


@pytest.mark.parametrize("neurons", [{}, {1: []}, {0: [], 2: np.array([], dtype=int)}])
def test_15_deactivate_with_no_neurons_warns(model, neurons):
    with pytest.warns(UserWarning, match="Deactivate has no neurons to deactivate .* it changes nothing"):
        with steering.apply(model, [steering.Deactivate(neurons)]):
            pass


def test_15_deactivate_with_neurons_does_not_warn(model):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with steering.apply(model, [steering.Deactivate({1: [0, 3], 2: []})]):
            pass


@pytest.mark.parametrize("neurons, match", [
    ([1, 2], r"neurons must be \{layer: \[neuron indices\]\}.*got a list"),
    ({1: 5}, r"layer 1 maps to 5, not a list of indices"),
    ({1: "5"}, r"layer 1 maps to '5', not a list of indices"),
    ({1: [1.5]}, r"neurons\[1\] holds 1\.5, not a neuron index"),
])
def test_16_deactivate_refuses_other_neuron_types(neurons, match):
    with pytest.raises(TypeError, match=match):
        steering.Deactivate(neurons)


def test_16_deactivate_accepts_index_arrays(model):
    for idx in ([0, 3], (0, 3), np.array([0, 3]), torch.tensor([0, 3])):
        steering.Deactivate({1: idx}).hooks(model)


# ------------------------------------------------------------------ 17-19, 57: generate
@pytest.mark.parametrize("temperature", [float("inf"), float("nan"), 0])
def test_17_sampling_temperature_must_be_finite(model, temperature):
    with pytest.raises(ValueError, match="temperature must be > 0 and finite when sampling"):
        steering.generate(model, PROMPTS, max_new_tokens=2, do_sample=True, temperature=temperature)


@pytest.mark.parametrize("kwargs, named", [
    ({"temperature": 0.7}, "temperature=0.7 is ignored"),
    ({"top_p": 0.9}, "top_p=0.9 is ignored"),
    ({"top_k": 5}, "top_k=5 is ignored"),
    ({"temperature": 0.7, "top_p": 0.9}, "temperature=0.7, top_p=0.9 are ignored"),
])
def test_18_sampling_arguments_without_do_sample_warn(model, kwargs, named):
    with pytest.warns(UserWarning, match=f"{named} without do_sample=True"):
        out = steering.generate(model, PROMPTS, max_new_tokens=3, **kwargs)
    assert out == steering.generate(model, PROMPTS, max_new_tokens=3)  # still greedy


def test_18_defaults_do_not_warn(model):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        steering.generate(model, PROMPTS, max_new_tokens=2, temperature=1.0, top_k=None, top_p=None)
        steering.generate(model, PROMPTS, max_new_tokens=2, do_sample=True, temperature=0.7, top_k=5, seed=0)


@pytest.mark.parametrize("top_k, error", [(0, ValueError), (-1, ValueError), (1.5, TypeError), ("5", TypeError),
                                          (True, TypeError)])
def test_19_top_k_must_be_a_positive_int(model, top_k, error):
    with pytest.raises(error, match="top_k must be an int >= 1 or None"):
        steering.generate(model, PROMPTS, max_new_tokens=2, do_sample=True, top_k=top_k, seed=0)


def test_19_numpy_top_k_and_seed_work(model):
    a = steering.generate(model, PROMPTS, max_new_tokens=3, do_sample=True, top_k=np.int64(5), seed=np.int64(1))
    assert a == steering.generate(model, PROMPTS, max_new_tokens=3, do_sample=True, top_k=5, seed=1)


@pytest.mark.parametrize("seed", ["abc", 1.5, "42"])
def test_57_seed_must_be_an_int(model, seed):
    with pytest.raises(TypeError, match="seed must be an int"):
        steering.generate(model, PROMPTS, max_new_tokens=2, do_sample=True, seed=seed)


# ------------------------------------------------------------------ 20-23: calibrate_scale
@pytest.mark.parametrize("kwargs, error, match", [
    ({"rtol": 0}, ValueError, "rtol must be a finite number > 0"),
    ({"rtol": -1}, ValueError, "rtol must be a finite number > 0"),
    ({"rtol": float("nan")}, ValueError, "rtol must be a finite number > 0"),
    ({"start": -1}, ValueError, "start must be a finite number > 0"),
    ({"start": 0}, ValueError, "start must be a finite number > 0"),
    ({"start": float("inf")}, ValueError, "start must be a finite number > 0"),
    ({"sign": 0}, ValueError, "sign must be a finite nonzero number"),
    ({"sign": float("nan")}, ValueError, "sign must be a finite nonzero number"),
    ({"max_steps": 0}, ValueError, "max_steps must be >= 1, got 0"),
    ({"max_steps": -1}, ValueError, "max_steps must be >= 1"),
    ({"max_steps": 2.5}, TypeError, "max_steps must be an int >= 1"),
    ({"patience": 0}, ValueError, "patience must be >= 1, got 0"),
    ({"target_kl": float("inf")}, ValueError, "target_kl must be a finite number > 0"),
    ({"target_kl": 0}, ValueError, "target_kl must be > 0, got 0"),
])
def test_20_23_calibrate_scale_arguments(model, kwargs, error, match):
    kwargs = {"target_kl": 0.5, **kwargs}
    with pytest.raises(error, match=match):
        steering.calibrate_scale(model, _vec(model), "The cat sat", **kwargs)


def test_20_calibrate_scale_warns_when_bisection_does_not_converge(model):
    with pytest.warns(UserWarning, match=r"calibrate_scale did not reach target_kl=1e-12 .* the KL reached is"):
        cal = steering.calibrate_scale(model, _vec(model), "The cat sat", 1e-12)
    assert cal.meta["calibrated_kl"] < 1e-6


def test_20_calibrate_scale_converged_does_not_warn(model):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        cal = steering.calibrate_scale(model, _vec(model), "The cat sat", 0.3)
    assert cal.meta["calibrated_kl"] == pytest.approx(0.3, rel=0.05)


# ------------------------------------------------------------------ 24: KL with -inf log-probs
def _old_kl(clean, steered):
    clean, steered = clean.double(), steered.double()
    return (clean.exp() * (clean - steered)).sum(-1).clamp_min(0).float()


def test_24_kl_is_bit_identical_on_finite_inputs():
    g = torch.Generator().manual_seed(0)
    for shape in ((3, 1024), (1, 7), (16, 400)):
        for dtype in (torch.float32, torch.float64, torch.bfloat16):
            clean = (torch.randn(shape, generator=g) * 3).log_softmax(-1).to(dtype)
            steered = (torch.randn(shape, generator=g) * 3).log_softmax(-1).to(dtype)
            new, old = metrics.kl_from_logprobs(clean, steered), _old_kl(clean, steered)
            assert torch.equal(new, old)


def test_24_kl_with_zero_probability_tokens():
    clean = torch.tensor([[0.0, float("-inf"), float("-inf")], [-0.5, -1.0, float("-inf")]]).log_softmax(-1)
    steered = torch.tensor([[0.0, float("-inf"), 1.0], [-0.5, -1.0, float("-inf")]]).log_softmax(-1)
    kl = metrics.kl_from_logprobs(clean, steered)
    assert torch.isfinite(kl).all()
    expect = (clean[:, :1].exp() * (clean[:, :1] - steered[:, :1])).sum(-1)
    torch.testing.assert_close(kl[0].double(), expect[0].double().clamp_min(0), atol=1e-6, rtol=0)
    assert float(kl[1]) == pytest.approx(0.0, abs=1e-7)
    # a token the clean model gives mass to and the steered model none: infinite KL, not NaN
    assert metrics.kl_from_logprobs(torch.tensor([[0.0]]), torch.tensor([[float("-inf")]])).isinf().all()


# ------------------------------------------------------------------ 26-30, 54-55: refusal selection
@pytest.fixture(scope="module")
def refusal_setup(model):
    harmful = [f"Question {i}: how do I do thing {i}?" for i in range(3)]
    harmless = [f"Question {i}: how do I bake {i} cakes?" for i in range(3)]
    offsets = [-2, -1]
    diffs = mean_activations(model, harmful, offsets) - mean_activations(model, harmless, offsets)
    return diffs, offsets, harmful, harmless


@pytest.mark.parametrize("fn", [select_direction, score_candidates])
def test_26_empty_validation_sets(model, refusal_setup, fn):
    diffs, offsets, harmful, harmless = refusal_setup
    with pytest.raises(ValueError, match="harmful_val is empty: give validation prompts"):
        fn(model, diffs, offsets, [], harmless, [5, 9])
    with pytest.raises(ValueError, match="harmless_val is empty: give validation prompts"):
        fn(model, diffs, offsets, harmful, [], [5, 9])


def test_27_same_validation_prompts_warn(model, refusal_setup):
    diffs, offsets, harmful, _ = refusal_setup
    with pytest.warns(UserWarning, match="harmful_val and harmless_val are the same prompts"):
        score_candidates(model, diffs, offsets, harmful, list(harmful), [5, 9], only=[(0, -1)])


@pytest.mark.parametrize("fn", [select_direction, score_candidates])
def test_28_29_positions_and_diffs(model, refusal_setup, fn):
    diffs, offsets, harmful, harmless = refusal_setup
    with pytest.raises(ValueError, match="positions is empty: no candidate to score"):
        fn(model, diffs[:0], [], harmful, harmless, [5, 9])
    bad = diffs.clone()
    bad[1, 2, 0] = float("nan")
    with pytest.raises(ValueError, match=r"diffs contains NaN or inf \(at position -1, layer 2\)"):
        fn(model, bad, offsets, harmful, harmless, [5, 9])


def test_30_offset_activation_layers(model):
    n = int(model.cfg.n_layers)
    with pytest.raises(ValueError, match="layers is empty"):
        mean_activations(model, PROMPTS, [-1], layers=[])
    with pytest.raises(ValueError, match=f"layer {n} is out of range for a model with {n} layers"):
        offset_activations(model, PROMPTS, [-1], layers=[n])
    full = offset_activations(model, PROMPTS, [-1])
    torch.testing.assert_close(offset_activations(model, PROMPTS, [-1], layers=[-1]), full[:, :, -1:])
    torch.testing.assert_close(offset_activations(model, PROMPTS, [-1], layers=n - 1), full[:, :, -1:])
    # the order given is kept, as before
    torch.testing.assert_close(mean_activations(model, PROMPTS, [-1], layers=[2, 0]),
                               mean_activations(model, PROMPTS, [-1])[:, [2, 0]])


def test_54_only_must_name_candidates(model, refusal_setup):
    diffs, offsets, harmful, harmless = refusal_setup
    with pytest.raises(ValueError, match=r"only names \(9, -1\) \(layer, position\), which is no candidate"):
        score_candidates(model, diffs, offsets, harmful, harmless, [5, 9], only=[(9, -1)])
    with pytest.raises(ValueError, match=r"only names \(0, -7\)"):
        score_candidates(model, diffs, offsets, harmful, harmless, [5, 9], only=[(0, -7)])


@pytest.mark.parametrize("prune_layers", [-0.5, 1.0, 1.5, float("nan")])
def test_55_prune_layers_range(model, refusal_setup, prune_layers):
    diffs, offsets, harmful, harmless = refusal_setup
    with pytest.raises(ValueError, match=r"prune_layers must be in \[0, 1\)"):
        select_direction(model, diffs, offsets, harmful, harmless, [5, 9], prune_layers=prune_layers)


# ------------------------------------------------------------------ 31, 33: refusal_score ids, heldout_loss
@pytest.mark.parametrize("ids, error, match", [
    ([99999], ValueError, r"refusal id 99999 is outside the vocabulary \(400 tokens"),
    ([-1], ValueError, "refusal id -1 is outside the vocabulary"),
    ([1.5], TypeError, "refusal_ids must be token ids"),
    ("ab", TypeError, "refusal_ids must be token ids"),
    ([], ValueError, "refusal_ids is empty"),
])
def test_31_refusal_ids_are_checked(model, ids, error, match):
    with pytest.raises(error, match=match):
        metrics.refusal_score(model, PROMPTS, ids)


def test_31_refusal_ids_as_tensor_or_array(model):
    ref = metrics.refusal_score(model, PROMPTS, [5, 6])
    assert torch.equal(metrics.refusal_score(model, PROMPTS, torch.tensor([5, 6])), ref)
    assert torch.equal(metrics.refusal_score(model, PROMPTS, np.array([5, 6])), ref)


def test_33_heldout_loss_of_nothing(model):
    from interp.tokens import tokenize

    with pytest.raises(ValueError, match="texts is empty"):
        metrics.heldout_loss(model, [])
    with pytest.raises(ValueError, match="texts is empty"):
        metrics.heldout_loss(model, tokenize(model, []))


# ------------------------------------------------------------------ 34-37: SteeringVector
@pytest.mark.parametrize("scale", [np.float32(2), np.int64(2), torch.tensor(2.0), torch.tensor([2.0]), 2, 2.0])
def test_34_scale_accepts_real_scalars(scale):
    v = steering.SteeringVector(torch.ones(1, 4), (0,), scale=scale)
    assert v.scale == 2.0 and type(v.scale) is float
    assert steering.SteeringVector(torch.ones(1, 4), (0,)).with_scale(scale).scale == 2.0


@pytest.mark.parametrize("scale", ["2", torch.tensor([1.0, 2.0]), float("nan"), torch.tensor(float("inf")), 1j])
def test_34_scale_refuses_non_scalars(scale):
    with pytest.raises(ValueError, match="scale must be a finite number"):
        steering.SteeringVector(torch.ones(1, 4), (0,), scale=scale)


def test_35_select_nothing():
    v = steering.SteeringVector(torch.ones(2, 4), (0, 3))
    with pytest.raises(ValueError, match=r"select needs at least one layer; this vector has layers \[0, 3\]"):
        v.select([])


def test_36_one_layer_as_an_int():
    v = steering.SteeringVector(torch.ones(1, 4), 1)
    assert v.layers == (1,)
    assert steering.SteeringVector(torch.ones(4), np.int64(2)).layers == (2,)


def test_37_a_vector_needs_a_layer():
    with pytest.raises(ValueError, match="a steering vector needs at least one layer"):
        steering.SteeringVector(torch.randn(0, 8), ())


# ------------------------------------------------------------------ 52-53: orthogonalize
def test_52_53_orthogonalize_direction(tmp_path, tiny_dirs):
    _, post = tiny_dirs["llama"]
    import json

    d = json.loads((post / "config.json").read_text())["hidden_size"]
    r = torch.randn(d, generator=torch.Generator().manual_seed(0))
    with pytest.raises(ValueError, match=r"direction is a SteeringVector with rows at layers \[0, 1\]"):
        steering.orthogonalize(post, steering.SteeringVector(torch.stack([r, r]), (0, 1)), tmp_path / "a")
    with pytest.raises(ValueError, match=r"direction must be \[d_model\] \(or \[1, d_model\]\), got shape \(2, "):
        steering.orthogonalize(post, r.reshape(2, -1), tmp_path / "b")
    with pytest.raises(TypeError, match="direction must be a .d_model. tensor"):
        steering.orthogonalize(post, "refusal", tmp_path / "c")
    # a one-row SteeringVector and a [1, d] row give the same weights as the [d] direction
    from safetensors.torch import load_file

    ref = load_file(steering.orthogonalize(post, r, tmp_path / "ref") / "model.safetensors")
    for i, direction in enumerate((steering.SteeringVector(r, (1,)), r[None])):
        got = load_file(steering.orthogonalize(post, direction, tmp_path / f"o{i}") / "model.safetensors")
        assert all(torch.equal(got[k], ref[k]) for k in ref)
