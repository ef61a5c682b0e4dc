"""interp.confidence: calibration against NumPy references, and entropy neurons recovered from a planted answer.

The planted model is a tiny Llama whose unembedding is made blind to one direction ``u`` (every token's row of
``lm_head`` orthogonal to it) and whose final norm gain ``g`` is non-uniform, so the *effective* unembedding
``diag(g) W_U`` is blind to ``v = u / g``, not to ``u``. One last-layer neuron writes along ``v`` with a large
norm: it must rank first, its mean ablation must change entropy by what a hand-made pass through the final
RMSNorm gives, and its direct effect (final norm's scale frozen) must be zero.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from interp import confidence as C
from interp.datasets import PromptSet

CORPUS = ["The city of Paris is in France.", "Madrid is the capital of Spain, and Rome is the capital of Italy.",
          "Die Katze ist auf dem Tisch.", "72 is larger than 15, and 8 is smaller than 9.",
          "Le chat est sur la table."]
NEURON = 37  # the planted neuron of the last layer


def _facts(rows):
    return PromptSet("facts", [r[0] for r in rows], meta=[{"answer": r[1], "alternatives": tuple(r[2])} for r in rows])


FACTS = _facts([("The city of Paris is in", " France", [" Germany", " Spain", " Italy"]),
                ("The city of Berlin is in", " Germany", [" France", " Spain", " Italy"]),
                ("Madrid is in", " Spain", [" France", " Germany", " Italy"])])


# ------------------------------------------------------------------------------------------ planted model


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    """``(model, model without the neuron, g, u, v)``: the planted Llama and the same with neuron ``NEURON``'s
    output column zeroed (for the hand-made reference)."""
    import shutil

    from safetensors.torch import load_file, save_file

    import interp
    from interp.testing import build_tiny_model

    root = tmp_path_factory.mktemp("planted")
    path = build_tiny_model("llama", root / "model", n_layers=2, d_model=64, d_mlp=128, seed=3)
    w = load_file(path / "model.safetensors")
    gen = torch.Generator().manual_seed(7)
    d = w["model.norm.weight"].shape[0]
    g = 0.2 + 2.8 * torch.rand(d, generator=gen)  # a non-uniform final gain
    u = torch.randn(d, generator=gen)
    u /= u.norm()
    lm = w["lm_head.weight"]
    w["lm_head.weight"] = lm - (lm @ u)[:, None] * u[None, :]  # W_U^T u = 0
    w["model.norm.weight"] = g
    v = u / g
    v /= v.norm()  # (diag(g) W_U)^T v = W_U^T (g * v) ∝ W_U^T u = 0
    down = w["model.layers.1.mlp.down_proj.weight"]  # [d_model, d_mlp]
    down[:, NEURON] = 12 * down.norm(dim=0).median() * v
    for proj in ("gate_proj", "up_proj"):  # a large, input-dependent activation
        w[f"model.layers.1.mlp.{proj}.weight"][NEURON] *= 4
    save_file(w, path / "model.safetensors", metadata={"format": "pt"})
    zeroed = root / "zeroed"
    shutil.copytree(path, zeroed)
    w0 = dict(w)
    w0["model.layers.1.mlp.down_proj.weight"] = down.clone()
    w0["model.layers.1.mlp.down_proj.weight"][:, NEURON] = 0
    save_file(w0, zeroed / "model.safetensors", metadata={"format": "pt"})
    return interp.load_model(path), interp.load_model(zeroed), g.double(), u.double(), v.double()


def test_planted_neuron_ranks_first_only_with_the_gain_folded_in(planted):
    model, _, g, u, v = planted
    en = C.entropy_neurons(model)
    assert en.null_space.k == 1  # round(0.01 * 64)
    assert torch.allclose(en.null_space.gain, g, atol=1e-6)  # read from the norm module
    assert abs(float(en.null_space.basis[:, 0] @ v)) > 0.9999  # the effective null direction, not u
    assert en.order[0] == NEURON and en.selected == (NEURON,)
    assert en.rho[NEURON] > 0.9999
    assert np.delete(en.rho, NEURON).max() < 0.5
    assert en.norm[NEURON] > 5 * np.median(en.norm)
    # without the gain the planted direction would not be null: the raw W_U's null direction is u
    assert abs(float(u @ v)) < 0.9


def _ids(model, text: str) -> torch.Tensor:
    """``[1, pos]`` ids of one text under the toolkit's BOS policy (one BOS)."""
    from interp.tokens import tokenize

    return torch.tensor([tokenize(model, [text]).encodings[0].ids])


def _hand_entropy(r: torch.Tensor, g: torch.Tensor, W_U: torch.Tensor, eps: float, scale=None) -> torch.Tensor:
    """Entropy of ``RMSNorm(r) W_U`` computed by hand (``scale``: the norm's denominator held fixed)."""
    s = (r.pow(2).mean(-1, keepdim=True) + eps).sqrt() if scale is None else scale
    logp = ((r / s) * g @ W_U).log_softmax(-1)
    return -(logp.exp() * logp).sum(-1)


def test_mean_ablation_matches_a_hand_forward_through_the_final_norm(planted):
    from interp.hooks import attached

    model, zeroed, g, _, _ = planted
    eps = float(model.ln_final.original_component.variance_epsilon)
    W_U = model.lm_head.weight.detach().double().T if hasattr(model, "lm_head") else model.W_U.detach().double()
    w = model.W_out[-1][NEURON].detach().double()

    def final_residual(m, text):  # what enters the final norm, one text at a time (no padding)
        seen = {}
        with torch.no_grad(), attached(m, [("ln_final.hook_in", lambda act, hook: seen.update(r=act.double()[0]))]):
            m(_ids(m, text))
        return seen["r"][1:]  # BOS position excluded

    r_clean = [final_residual(model, t) for t in CORPUS]
    r_without = [final_residual(zeroed, t) for t in CORPUS]
    acts = [((a - b) @ w) / (w @ w) for a, b in zip(r_clean, r_without)]  # the neuron's activation per token
    for a, b, x in zip(r_clean, r_without, acts):  # the difference is the neuron's output alone
        assert torch.allclose(a - b, x[:, None] * w[None, :], atol=1e-4)
    mu = torch.cat(acts).mean()
    H_clean = torch.cat([_hand_entropy(r, g, W_U, eps) for r in r_clean])
    H_total = torch.cat([_hand_entropy(b + mu * w, g, W_U, eps) for b in r_without])
    H_direct = torch.cat([_hand_entropy(b + mu * w, g, W_U, eps, (a.pow(2).mean(-1, keepdim=True) + eps).sqrt())
                          for a, b in zip(r_clean, r_without)])

    means = C.mean_activations(model, CORPUS)
    assert means[NEURON] == pytest.approx(float(mu), rel=1e-4)
    eff = C.ablation_effects(model, CORPUS, {"planted": [NEURON]}, means=means, batch_size=2)
    np.testing.assert_allclose(eff.clean, H_clean.numpy(), atol=2e-5)
    np.testing.assert_allclose(eff.total["planted"], (H_total - H_clean).numpy(), atol=5e-5)
    assert abs(eff.mean("planted")) > 0.05  # a real effect, through the norm's scale
    assert float((H_direct - H_clean).abs().max()) < 1e-6  # it writes into the null space (float32 weights)
    assert np.abs(eff.direct["planted"]).max() < 5e-5
    np.testing.assert_allclose(eff.values("planted", "via_norm"), eff.total["planted"] - eff.direct["planted"])
    low, high = eff.ci("planted")
    assert low <= eff.mean("planted") <= high


def test_a_random_last_layer_neuron_moves_the_logits_directly(planted):
    model = planted[0]
    means = C.mean_activations(model, CORPUS)
    other = int(C.entropy_neurons(model).order[-1])  # the neuron writing least into the null space
    eff = C.ablation_effects(model, CORPUS, {"other": [other]}, means=means)
    assert np.abs(eff.direct["other"]).max() > 1e-4


def test_post_feedforward_norm_and_gemma_gain_enter_the_direction(tmp_path):
    """Gemma 2: final gain 1 + w and a post-feedforward RMSNorm; the planted direction is null only through both."""
    from safetensors.torch import load_file, save_file

    import interp
    from interp.hooks import attached
    from interp.testing import build_tiny_model

    path = build_tiny_model("gemma2", tmp_path / "g", n_layers=2, d_model=64, d_mlp=128, seed=5)
    w = load_file(path / "model.safetensors")
    gen = torch.Generator().manual_seed(11)
    d = 64
    w_final, w_post = torch.rand(d, generator=gen) - 0.3, torch.rand(d, generator=gen) - 0.3
    u = torch.randn(d, generator=gen)
    u /= u.norm()
    emb = w["model.embed_tokens.weight"]  # tied: the unembedding
    w["model.embed_tokens.weight"] = emb - (emb @ u)[:, None] * u[None, :]
    w["model.norm.weight"], w["model.layers.1.post_feedforward_layernorm.weight"] = w_final, w_post
    direction = u / (1 + w_final) / (1 + w_post)  # after the post norm's gain: u / (1 + w_final), null
    w["model.layers.1.mlp.down_proj.weight"][:, 3] = 10 * direction / direction.norm()
    save_file(w, path / "model.safetensors", metadata={"format": "pt"})
    model = interp.load_model(path)

    D = C.neuron_directions(model, -1)
    expected = w["model.layers.1.mlp.down_proj.weight"].T.double() * (1 + w_post.double())
    torch.testing.assert_close(D, expected, atol=1e-5, rtol=1e-5)
    en = C.entropy_neurons(model)
    torch.testing.assert_close(en.null_space.gain, 1 + w_final.double(), atol=1e-5, rtol=1e-5)
    assert en.order[0] == 3 and en.rho[3] > 0.9999

    # the replayed passes give what a full pass with the same hook gives
    means = C.mean_activations(model, CORPUS[:3])
    eff = C.ablation_effects(model, CORPUS[:3], {"n": [3]}, means=means, batch_size=3)
    expected = []
    for text in CORPUS[:3]:
        def put(act, hook):
            out = act.clone()
            out[..., 3] = means[3].float()
            return out
        with torch.no_grad():
            with attached(model, [("blocks.1.mlp.hook_post", put)]):
                ablated = model(_ids(model, text))[0, 1:]
            clean = model(_ids(model, text))[0, 1:]
        expected.append(C.next_token_entropy(ablated) - C.next_token_entropy(clean))
    np.testing.assert_allclose(eff.total["n"], torch.cat(expected).numpy(), atol=2e-5)
    assert np.abs(eff.total["n"]).max() > 1e-3


def test_layernorm_null_space_lies_in_the_mean_zero_subspace(tmp_path):
    import interp
    from interp.testing import build_tiny_model

    model = interp.load_model(build_tiny_model("gpt2", tmp_path / "gpt2", n_layers=2))
    ns = C.unembedding_null_space(model, 3)
    assert ns.centred and ns.k == 3 and len(ns.singular_values) == 63
    torch.testing.assert_close(ns.basis.T @ ns.basis, torch.eye(3, dtype=torch.float64), atol=1e-10, rtol=0)
    assert ns.basis.sum(0).abs().max() < 1e-8  # no component along the all-ones direction the norm removes
    assert torch.all(ns.singular_values[:-1] >= ns.singular_values[1:])


def _edited_llama(path, edit, seed=3):
    """A tiny Llama (d_model 64, d_mlp 128) whose safetensors ``edit(weights, generator)`` changes in place."""
    from safetensors.torch import load_file, save_file

    import interp
    from interp.testing import build_tiny_model

    folder = build_tiny_model("llama", path, n_layers=2, d_model=64, d_mlp=128, seed=seed)
    w = load_file(folder / "model.safetensors")
    edit(w, torch.Generator().manual_seed(seed))
    save_file(w, folder / "model.safetensors", metadata={"format": "pt"})
    return interp.load_model(folder), w


def _reference_null_space(w, k):
    """NumPy: bottom ``k`` left singular vectors (and every singular value) of ``diag(g) W_U`` centred over the
    vocabulary, from the checkpoint's own tensors."""
    W_U = w["lm_head.weight"].double().numpy().T  # [d_model, d_vocab]
    W = w["model.norm.weight"].double().numpy()[:, None] * W_U
    U, S, _ = np.linalg.svd(W - W.mean(1, keepdims=True), full_matrices=False)
    return U[:, -k:], S


def _projector(B):
    B = np.asarray(B, dtype=np.float64)
    return B @ B.T


def test_null_space_is_centred_over_the_vocabulary_as_a_numpy_reference(tmp_path):
    """Every token's unembedding row carries the same large component along u: softmax ignores it, so after
    centring the effective null direction is v = u / g; uncentred, u / g has a singular value of about
    c sqrt(V) and lies at the top of the spectrum instead."""
    state = {}

    def edit(w, gen):
        d = w["model.norm.weight"].shape[0]
        g = 0.5 + torch.rand(d, generator=gen)
        u = torch.randn(d, generator=gen)
        u /= u.norm()
        lm = w["lm_head.weight"]
        w["lm_head.weight"] = lm - (lm @ u)[:, None] * u[None, :] + 3.0 * u[None, :]  # W_U^T u = 3 for every token
        w["model.norm.weight"] = g
        state["v"] = (u / g) / (u / g).norm()

    model, w = _edited_llama(tmp_path / "m", edit)
    for k in (1, 3):
        ns = C.unembedding_null_space(model, k)
        basis, S = _reference_null_space(w, k)
        # float32 products inside (a null singular value comes out as sqrt(float32 rounding), ~3e-4): agreement
        # to 1e-4 / 1e-3, where skipping the centring moves the projector by O(1) and u/g's value to ~3 sqrt(V)
        np.testing.assert_allclose(_projector(ns.basis), _projector(basis), atol=1e-4)
        np.testing.assert_allclose(ns.singular_values.numpy(), S, rtol=1e-4, atol=1e-3)
    ns = C.unembedding_null_space(model, 1)
    assert abs(float(ns.basis[:, 0] @ state["v"].double())) > 0.9999


def test_entropy_neurons_are_ranked_by_rho_times_norm_as_a_numpy_reference(tmp_path):
    """Three planted last-layer neurons: A the largest norm but orthogonal to the null space (rho = 0), B a
    smaller norm entirely in it (rho = 1), C a norm between them with rho = 1/sqrt(2). rho * norm ranks C, B
    first; the norm alone would rank A first."""
    A, B, Cn = 5, 9, 11
    state = {}

    def edit(w, gen):
        d = w["model.norm.weight"].shape[0]
        g = 0.5 + torch.rand(d, generator=gen)
        u = torch.randn(d, generator=gen)
        u /= u.norm()
        lm = w["lm_head.weight"]
        w["lm_head.weight"] = lm - (lm @ u)[:, None] * u[None, :]
        w["model.norm.weight"] = g
        v = (u / g) / (u / g).norm()
        other = torch.randn(d, generator=gen)
        other -= (other @ v) * v
        other /= other.norm()
        down = w["model.layers.1.mlp.down_proj.weight"]  # [d_model, d_mlp]: column j is neuron j's row of W_out
        m = down.norm(dim=0).median()
        down[:, A] = 20 * m * other
        down[:, B] = 4 * m * v
        down[:, Cn] = 6 * m * (v + other) / 2 ** 0.5
        state["down"] = down.clone()

    model, w = _edited_llama(tmp_path / "m", edit)
    basis, _ = _reference_null_space(w, 1)
    D = state["down"].double().numpy().T  # [d_mlp, d_model]
    norm = np.linalg.norm(D, axis=1)
    rho = np.linalg.norm(D @ basis, axis=1) / norm
    order = np.argsort(-(rho * norm), kind="stable")

    en = C.entropy_neurons(model, n_neurons=2, rho_threshold=0.0)
    np.testing.assert_allclose(en.norm, norm, rtol=1e-6)
    np.testing.assert_allclose(en.rho, rho, atol=1e-6)
    np.testing.assert_allclose(en.score, rho * norm, rtol=1e-5, atol=1e-7)
    assert en.order[:10].tolist() == order[:10].tolist()
    assert en.selected == (Cn, B) and A not in en.order[:10]
    assert norm.argmax() == A  # the norm alone would have picked A
    # with the default threshold (rho >= 0.5) C and B are selected, A never
    assert C.entropy_neurons(model, n_neurons=3).selected[:2] == (Cn, B)


# ------------------------------------------------------------------------------------------ calibration


def _ece_reference(conf, correct, n_bins):
    """Guo et al.'s ECE written out: bins ((m-1)/M, m/M], 0 in the first."""
    conf, correct = np.asarray(conf, float), np.asarray(correct, float)
    total, rows = 0.0, []
    for m in range(1, n_bins + 1):
        lo, hi = (m - 1) / n_bins, m / n_bins
        inside = np.array([(lo < c <= hi) or (m == 1 and c == 0) for c in conf])
        if inside.any():
            acc, mean = correct[inside].mean(), conf[inside].mean()
            total += inside.sum() / len(conf) * abs(acc - mean)
            rows.append((int(inside.sum()), mean, acc))
        else:
            rows.append((0, np.nan, np.nan))
    return total, rows


@pytest.mark.parametrize("n_bins", [1, 3, 10, 15, C.MAX_BINS])
def test_ece_and_reliability_match_a_numpy_reference(n_bins):
    rng = np.random.default_rng(n_bins)
    conf = np.r_[rng.uniform(0, 1, 200), 0.0, 0.1, 0.2, 0.5, 1.0, 1 / 3]  # bin edges included
    correct = rng.random(len(conf)) < conf ** 1.5
    ece, rows = _ece_reference(conf, correct, n_bins)
    assert C.expected_calibration_error(conf, correct, n_bins) == pytest.approx(ece, abs=1e-12)
    rel = C.reliability(conf, correct, n_bins)
    np.testing.assert_array_equal(rel["count"], [r[0] for r in rows])
    np.testing.assert_allclose(rel["confidence"], [r[1] for r in rows], atol=1e-12)
    np.testing.assert_allclose(rel["accuracy"], [r[2] for r in rows], atol=1e-12)
    np.testing.assert_allclose(rel["edges"], np.linspace(0, 1, n_bins + 1))


def test_a_bin_is_closed_on_the_right():
    # 0.2 belongs to (0.1, 0.2]; 0.0 to the first bin
    rel = C.reliability([0.0, 0.2, 0.2000001], [1, 1, 0], n_bins=10)
    assert rel["count"][:3].tolist() == [1, 1, 1]


def test_a_calibrated_sample_lies_inside_its_null_and_a_miscalibrated_one_above():
    rng = np.random.default_rng(0)
    conf = rng.uniform(0.25, 1.0, 400)
    calibrated = rng.random(400) < conf
    overconfident = rng.random(400) < conf ** 3
    null = C.calibrated_ece_null(conf, 10, seed=1)
    assert 0 < null["low"] < null["mean"] < null["high"] < 0.1
    assert null["low"] <= C.expected_calibration_error(conf, calibrated) <= null["high"]
    assert C.expected_calibration_error(conf, overconfident) > 2 * null["high"]
    assert C.calibrated_ece_null(conf, 10, seed=1) == null  # seeded


@pytest.mark.parametrize("n_bins", [1, 10, C.MAX_BINS])
def test_the_calibrated_null_is_the_ece_of_seeded_bernoulli_draws(n_bins):
    conf = np.random.default_rng(2).uniform(0, 1, 50)
    draws = (np.random.default_rng(3).random((200, 50)) < conf).astype(float)
    eces = np.array([_ece_reference(conf, d, n_bins)[0] for d in draws])
    null = C.calibrated_ece_null(conf, n_bins, n_draws=200, seed=3)
    assert null["mean"] == pytest.approx(eces.mean(), abs=1e-12)
    assert [null["low"], null["high"]] == pytest.approx(np.percentile(eces, [2.5, 97.5]).tolist(), abs=1e-12)


def test_n_bins_is_bounded_before_anything_is_allocated_per_bin():
    """A MemoryError once came from --confidence-n-bins 100000 (one column per bin for every draw of the null):
    every calibration function refuses more than MAX_BINS bins, saying why."""
    assert C.MAX_BINS == 100
    for fn in (C.expected_calibration_error, C.reliability):
        with pytest.raises(ValueError, match=r"n_bins must be at most 100, got 100000: bins narrower than 1/100 hold "
                                             "a handful of predictions each"):
            fn([0.5, 0.9], [1, 0], 100_000)
    with pytest.raises(ValueError, match="n_bins must be at most 100, got 101"):
        C.calibrated_ece_null([0.5, 0.9], 101)


@pytest.mark.parametrize("args, error, match", [
    (([], []), ValueError, "confidence is empty: calibration needs at least one prediction"),
    (([0.5, 0.6], [1]), ValueError, r"confidence and correct must be 1-D arrays of the same length; got shapes "
                                    r"\(2,\) and \(1,\)"),
    (([0.5, 1.2], [1, 0]), ValueError, r"confidence must hold probabilities in \[0, 1\]; got values from 0.5 to 1.2"),
    (([0.5, np.nan], [1, 0]), ValueError, r"confidence must hold probabilities in \[0, 1\].* and NaN"),
    (([0.5, 0.6], [1, 2]), ValueError, r"correct must hold 0/1 or booleans; got values \[1, 2\]"),
    (([0.5], [1], 0), ValueError, "n_bins must be >= 1, got 0"),
    (([0.5], [1], 2.5), TypeError, "n_bins must be an int >= 1, got 2.5"),
])
def test_bad_calibration_input_is_refused(args, error, match):
    for fn in (C.expected_calibration_error, C.reliability):
        with pytest.raises(error, match=match):
            fn(*args)


# -------------------------------------------------------------------------------------- multiple choice


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    import interp
    from interp.testing import build_tiny_model

    return interp.load_model(build_tiny_model("llama", tmp_path_factory.mktemp("tiny") / "m", n_layers=2))


def test_multiple_choice_is_the_renormalised_next_token_probability_of_first_tokens(tiny):
    from interp.generation import next_token_logits
    from interp.models import tokenizer_of

    mc = C.multiple_choice(tiny, FACTS)
    tok = tokenizer_of(tiny)
    p = next_token_logits(tiny, list(FACTS.texts)).double().softmax(-1)
    for i, meta in enumerate(FACTS.meta):
        ids = [tok(x, add_special_tokens=False)["input_ids"][0] for x in (meta["answer"], *meta["alternatives"])]
        assert mc.options[i].tolist() == ids
        expected = p[i, ids] / p[i, ids].sum()
        np.testing.assert_allclose(mc.probs[i], expected.numpy(), rtol=1e-6)
        assert mc.confidence[i] == pytest.approx(float(expected.max()))
        assert mc.correct[i] == (int(expected.argmax()) == 0)
        assert mc.entropy[i] == pytest.approx(float(-(p[i] * p[i].log()).sum()), rel=1e-5)


def test_ablated_choices_clean_pass_is_the_plain_multiple_choice(tiny):
    plain = C.multiple_choice(tiny, FACTS)
    means = C.mean_activations(tiny, CORPUS)
    out = C.ablated_choices(tiny, FACTS, {"half": list(range(0, 128, 2))}, means=means, batch_size=2)
    np.testing.assert_allclose(out["clean"].probs, plain.probs, atol=1e-6)
    np.testing.assert_allclose(out["clean"].entropy, plain.entropy, atol=1e-5)
    assert np.abs(out["half"].entropy - plain.entropy).max() > 1e-4


def test_rows_with_fewer_alternatives_are_renormalised_over_their_own_options(tiny):
    """A facts file may give rows 3, 1 or 2 alternatives: each row's probabilities sum to 1 over its own options,
    padded columns are -1 (ids) and 0 (probabilities), and the chance level is 1/options of each row."""
    from interp.generation import next_token_logits
    from interp.models import tokenizer_of

    facts = _facts([("The city of Paris is in", " France", [" Germany", " Spain", " Italy"]),
                    ("The city of Berlin is in", " Germany", [" France"]),
                    ("Madrid is in", " Spain", [" France", " Italy"])])
    mc = C.multiple_choice(tiny, facts)
    tok = tokenizer_of(tiny)
    p = next_token_logits(tiny, list(facts.texts)).double().softmax(-1)
    assert mc.options.shape == (3, 4) and mc.n_options.tolist() == [4, 2, 3]
    np.testing.assert_allclose(mc.chance, [1 / 4, 1 / 2, 1 / 3])
    for i, meta in enumerate(facts.meta):
        ids = [tok(x, add_special_tokens=False)["input_ids"][0] for x in (meta["answer"], *meta["alternatives"])]
        k = len(ids)
        assert mc.options[i, :k].tolist() == ids and (mc.options[i, k:] == C.NO_OPTION).all()
        expected = (p[i, ids] / p[i, ids].sum()).numpy()
        np.testing.assert_allclose(mc.probs[i, :k], expected, rtol=1e-6)
        assert (mc.probs[i, k:] == 0).all() and mc.probs[i].sum() == pytest.approx(1.0)
        assert mc.confidence[i] == pytest.approx(float(expected.max()))
        assert mc.correct[i] == (int(expected.argmax()) == 0)
    means = C.mean_activations(tiny, CORPUS)
    out = C.ablated_choices(tiny, facts, {"half": list(range(0, 128, 2))}, means=means, batch_size=2)
    np.testing.assert_allclose(out["clean"].probs, mc.probs, atol=1e-6)
    assert (out["half"].probs[:, 1:][mc.options[:, 1:] == C.NO_OPTION] == 0).all()


@pytest.mark.parametrize("meta, match", [
    ({"answer": " Paris", "alternatives": (" Madrid", " France", " Spain")},
     r"facts row 1 \(prompt 'Rome is in'\): options \[' Paris', ' Madrid', ' France', ' Spain'\] share a first "
     r"token \(' '\)"),
    ({"answer": " France"}, r"facts row 1 \(prompt 'Rome is in'\): meta needs 'answer'"),
    ({"answer": " France", "alternatives": " Spain"}, "meta needs 'answer'"),
    ({"answer": " France", "alternatives": ()}, "meta needs 'answer'"),
])
def test_bad_facts_are_refused(tiny, meta, match):
    facts = PromptSet("facts", ["Paris is in", "Rome is in"], meta=[FACTS.meta[0], meta])
    with pytest.raises(ValueError, match=match):
        C.answer_options(tiny, facts)


@pytest.mark.parametrize("meta, match", [
    ({"answer": ", France", "alternatives": (" Germany", " Spain")},
     r"facts row 1 \(prompt 'Rome is in'\): answer ', France' begins with the token ',', which holds no letter or "
     "digit"),
    ({"answer": " the France", "alternatives": (" Germany", " Spain")},
     r"facts row 1 \(prompt 'Rome is in'\): answer ' the France' begins with the article ' the'"),
    ({"answer": " France", "alternatives": (" Germany", " the Spain")},
     r"facts row 1 \(prompt 'Rome is in'\): alternative ' the Spain' begins with the article ' the'"),
    ({"answer": " France", "alternatives": (" Germany", ", Spain")},
     r"facts row 1 \(prompt 'Rome is in'\): alternative ', Spain' begins with the token ','"),
])
def test_options_whose_first_token_is_not_a_word_are_refused(tiny, meta, match):
    """The knowledge section's check of an answer's first token (interp.tracing), on the answer and on every
    alternative: the multiple choice would read the probability of " the" or "," instead of the option's."""
    facts = PromptSet("facts", ["Paris is in", "Rome is in"], meta=[FACTS.meta[0], meta])
    for fn in (C.answer_options, C.multiple_choice):
        with pytest.raises(ValueError, match=match):
            fn(tiny, facts)


def test_bad_ablation_input_is_refused(tiny):
    means = torch.zeros(128)
    with pytest.raises(ValueError, match="condition 'x' ablates no neuron; leave it out"):
        C.ablation_effects(tiny, CORPUS, {"x": []}, means=means)
    with pytest.raises(ValueError, match=r"condition 'x': neuron\(s\) \[128\] outside 0..127 \(d_mlp = 128\)"):
        C.ablation_effects(tiny, CORPUS, {"x": [128]}, means=means)
    with pytest.raises(ValueError, match="'clean' names the unablated pass"):
        C.ablated_choices(tiny, FACTS, {"clean": [1]}, means=means)
    with pytest.raises(ValueError, match=r"means must be \[d_mlp\] = \[128\] \(mean_activations\), got \(64,\)"):
        C.ablation_effects(tiny, CORPUS, {"x": [1]}, means=torch.zeros(64))
    with pytest.raises(ValueError, match="rho_threshold must be a fraction in"):
        C.entropy_neurons(tiny, rho_threshold=1.5)
    with pytest.raises(ValueError, match="null_dim must be at most 64"):
        C.unembedding_null_space(tiny, 65)


def test_a_model_without_the_scale_hook_has_no_direct_effect():
    from types import SimpleNamespace

    stub = SimpleNamespace(hook_dict={}, original_model=object())
    with pytest.raises(ValueError, match="exposes no 'ln_final.hook_scale'.*pass direct=False"):
        C._check_scale_hook(stub)


def test_random_neurons_are_seeded_distinct_and_exclude_the_chosen():
    draws = C.random_neurons(20, 5, n_draws=4, exclude=[0, 1, 2], seed=3)
    assert draws == C.random_neurons(20, 5, n_draws=4, exclude=[0, 1, 2], seed=3)
    assert all(len(set(d)) == 5 and not set(d) & {0, 1, 2} and max(d) < 20 for d in draws)
    assert len(set(draws)) > 1
    with pytest.raises(ValueError, match="cannot draw 18 neurons from the 17 left"):
        C.random_neurons(20, 18, exclude=[0, 1, 2])


@pytest.mark.parametrize("width", [6, 7])
def test_norm_gain_is_read_from_the_module(width):
    from transformers.models.gemma2.modeling_gemma2 import Gemma2RMSNorm
    from transformers.models.llama.modeling_llama import LlamaRMSNorm

    gen = torch.Generator().manual_seed(width)
    w = torch.rand(width, generator=gen) + 0.2
    ln = torch.nn.LayerNorm(width)
    rms, gemma = LlamaRMSNorm(width), Gemma2RMSNorm(width)
    with torch.no_grad():
        ln.weight.copy_(w)
        ln.bias.copy_(torch.randn(width, generator=gen))
        rms.weight.copy_(w)
        gemma.weight.copy_(w)
    for module, expected, centred in ((ln, w, True), (rms, w, False), (gemma, 1 + w, False)):
        gain, is_centred = C._norm_gain(module)
        torch.testing.assert_close(gain, expected.double(), atol=1e-5, rtol=1e-5)
        assert is_centred is centred
