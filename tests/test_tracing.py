"""Causal tracing and cross-model patching (``interp.tracing``).

The known answer: a tiny Llama whose weights are written here so that three facts are stored in one MLP and
read out by one attention head. Block ``K``'s MLP has one neuron per fact that fires (a gate threshold, the
MLP's bias) only on the clean embedding of that fact's last subject token, writing a marker and the fact's
answer carrier; block ``K + 1`` has one attention head whose query (the last token's feature) meets the
marker's key, so the last token copies the carrier, which the unembedding reads as the answer. Every other
attention output projection and MLP down projection is zero, and BOS is an attention sink the head falls back
to when no marker is present. Tracing must therefore find, with a window of 1:

* ``mlp``: the whole effect at (layer ``K``, last subject token), none elsewhere;
* ``attn``: the whole effect at (layer ``K + 1``, last token), none elsewhere;
* ``resid`` at the last subject token: the whole effect up to layer ``K`` (the MLP has yet to read it, or has
  written it there) and none after (the head has already read the corrupted state); at the last token the
  reverse: nothing up to ``K`` (the fact has not arrived yet), everything from ``K + 1``.

Parity tests restore states with hand-written hooks at other names of the same points (``hook_embed``,
``blocks.L.mlp.hook_out``, ``blocks.L.attn.hook_out``, ``blocks.L+1.hook_resid_pre``) and noise drawn
independently from the documented seeding.
"""

from __future__ import annotations

import copy
import hashlib

import pytest
import torch

import interp
from interp.datasets import PromptSet
from interp.hooks import attached
from interp.tracing import (PEAK_ROLES, ROLES, causal_trace, cross_model_patch, fact_predictions, fact_tokens,
                            subject_embedding_std, window_layers)

K = 1  # the block whose MLP stores the facts; block K + 1's attention moves them to the last token
N_LAYERS = 4
PLANTED = [("The city of Paris is in", "Paris", " France"), ("Berlin is the capital of", "Berlin", " Germany"),
           ("Madrid is in", "Madrid", " Spain")]


def facts_of(rows) -> PromptSet:
    return PromptSet("facts", [r[0] for r in rows], meta=[{"subject": r[1], "answer": r[2]} for r in rows])


def _write_planted(path):
    """The planted model of the module docstring, written to ``path`` (a tiny Llama folder)."""
    import transformers

    from interp.testing import build_tiny_model

    build_tiny_model("llama", path, n_layers=N_LAYERS, d_model=64, d_mlp=128, n_heads=4, n_ctx=64)
    cfg = transformers.AutoConfig.from_pretrained(path)
    cfg.mlp_bias = True  # the neurons' thresholds
    tok = transformers.AutoTokenizer.from_pretrained(path)
    marker, query, sink, carriers = 0, 1, 2, (3, 4, 5)  # residual dimensions; 8.. hold the token embeddings
    gen = torch.Generator().manual_seed(0)
    model = transformers.LlamaForCausalLM(cfg)
    sd = {k: (torch.ones_like(v) if "norm" in k else torch.zeros_like(v)) for k, v in model.state_dict().items()}
    emb = torch.zeros(cfg.vocab_size, 64)
    emb[:, 8:] = torch.randn(cfg.vocab_size, 56, generator=gen)
    emb[tok.bos_token_id, sink] = 4.0
    mlp, attn = f"model.layers.{K}.mlp.", f"model.layers.{K + 1}.self_attn."
    unembed = torch.randn(cfg.vocab_size, 64, generator=gen) * 0.1
    unembed[:, :8] = 0
    for j, (text, subject, answer) in enumerate(PLANTED):
        enc = tok(text, add_special_tokens=False, return_offsets_mapping=True)
        at = text.index(subject)
        covered = [i for i, (s, e) in enumerate(enc["offset_mapping"]) if e > s and s < at + len(subject) and e > at]
        last = enc["input_ids"][covered[-1]]
        emb[enc["input_ids"][-1], query] = 4.0
        u = emb[last] / emb[last].norm()  # RMSNorm makes the clean projection on u exactly sqrt(64) = 8
        sd[mlp + "gate_proj.weight"][j], sd[mlp + "gate_proj.bias"][j] = 10 * u, -72.0  # fires above 7.2
        sd[mlp + "up_proj.weight"][j] = u
        sd[mlp + "down_proj.weight"][marker, j] = 20 / 64  # silu(8) * 8 ~ 64 -> marker 20
        sd[mlp + "down_proj.weight"][carriers[j], j] = 5 / 64
        sd[attn + "v_proj.weight"][j, carriers[j]] = 1.0  # head 0 copies the carriers...
        sd[attn + "o_proj.weight"][carriers[j], j] = 6.0  # ...to the last token
        unembed[tok(answer, add_special_tokens=False)["input_ids"][0], carriers[j]] = 3.0
    # head 0's query and key in its slowest rotary pairs (6, 7): RoPE hardly turns them over a few tokens
    sd[attn + "q_proj.weight"][7, query] = sd[attn + "q_proj.weight"][6, query] = 2.0
    sd[attn + "k_proj.weight"][7, marker] = sd[attn + "k_proj.weight"][6, sink] = 2.0
    sd["model.embed_tokens.weight"], sd["lm_head.weight"] = emb, unembed
    model.load_state_dict(sd)
    model.save_pretrained(path)
    cfg.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    return interp.load_model(_write_planted(tmp_path_factory.mktemp("planted") / "model"), device="cpu")


@pytest.fixture(scope="module")
def planted_trace(planted):
    return causal_trace(planted, facts_of(PLANTED), samples=10, window=1)


@pytest.fixture(scope="module")
def pair():
    return interp.load_pair()


CITIES = [("Lyon", "France"), ("Berlin", "Germany"), ("Madrid", "Spain"), ("Munich", "Germany"),
          ("Seville", "Spain"), ("Paris", "France")]


@pytest.fixture(scope="module")
def cities() -> PromptSet:
    """Organism facts of two lengths (``The city of X is in``, ``X is a city in``)."""
    rows = [(f"The city of {c} is in", c, f" {a}") for c, a in CITIES[:4]]
    rows += [(f"{c} is a city in", c, f" {a}") for c, a in CITIES[4:]]
    return facts_of(rows)


# ------------------------------------------------------------------------------------------- known answer


def test_token_roles_follow_the_subject_offsets(planted_trace):
    # <s> The city of Ġ P ar is Ġis Ġin: "Paris" is tokens 5..7 (the bare space before it is not the subject's)
    assert planted_trace.facts[0].subject == (5, 8)
    assert planted_trace.roles()[0] == {ROLES[0]: (5,), ROLES[1]: (6,), ROLES[2]: (7,), ROLES[3]: (8,),
                                        ROLES[4]: (), ROLES[5]: (9,)}
    # <s> Ber lin Ġis Ġthe Ġcapital Ġof: the subject opens the prompt, the last token is a further token's neighbour
    assert planted_trace.roles()[1] == {ROLES[0]: (1,), ROLES[1]: (), ROLES[2]: (2,), ROLES[3]: (3,),
                                        ROLES[4]: (4, 5), ROLES[5]: (6,)}
    # a one-token subject is its first and last subject token
    assert planted_trace.roles()[2][ROLES[0]] == planted_trace.roles()[2][ROLES[2]] == (1,)


def test_planted_fact_is_traced_to_its_mlp_layer_and_last_subject_token(planted_trace):
    tr = planted_trace
    assert (tr.p_clean > 0.99).all() and tr.top1.all()
    assert (tr.p_corrupted < 0.05).all()
    ie = tr.indirect_effect()
    mlp, attn, resid = (tr.kinds.index(k) for k in ("mlp", "attn", "resid"))
    for i, f in enumerate(tr.facts):
        gap = float(tr.p_clean[i] - tr.p_corrupted[i])
        last_subject, last = f.last_subject, len(f) - 1
        # mlp: the effect is at (K, last subject token) and nowhere else
        m = ie[i, mlp, :, :len(f)]
        assert m[K, last_subject] > 0.7 * gap
        others = m.clone()
        others[K, last_subject] = 0
        assert others.abs().max() < 0.05 * gap
        # attn: at (K + 1, last token) and nowhere else
        a = ie[i, attn, :, :len(f)]
        assert a[K + 1, last] > 0.9 * gap
        others = a.clone()
        others[K + 1, last] = 0
        assert others.abs().max() < 0.05 * gap
        # resid at the last subject token: restored up to layer K, too late after it; at the last token the reverse
        r = ie[i, resid, :, :len(f)]
        assert (r[: K + 1, last_subject] > 0.9 * gap).all() and (r[K + 1:, last_subject].abs() < 0.05 * gap).all()
        assert (r[: K + 1, last].abs() < 0.05 * gap).all() and (r[K + 1:, last] > 0.9 * gap).all()
        assert r[:, [t for t in range(len(f)) if t not in (last_subject, last)]].abs().max() < 0.05 * gap
        # beyond the prompt: NaN
        assert torch.isnan(tr.p_restored[i, :, :, len(f):]).all()


def test_by_role_averages_each_prompts_tokens_of_a_role(planted_trace):
    tr = planted_trace
    ie, by_role = tr.indirect_effect(), tr.by_role()
    assert by_role.shape == (3, 3, N_LAYERS, len(ROLES))
    # Berlin: further tokens are positions 4 and 5; no middle subject token
    assert torch.allclose(by_role[1, :, :, ROLES.index("further tokens")], ie[1, :, :, 4:6].mean(-1))
    assert torch.isnan(by_role[1, :, :, ROLES.index("middle subject tokens")]).all()
    assert torch.equal(tr.at_role("last subject token")[0], ie[0, :, :, 7])
    with pytest.raises(ValueError, match="unknown role"):
        tr.at_role("subject")


@pytest.mark.parametrize("window, centres", [(2, {K, K + 1}), (3, {K - 1, K, K + 1})])
def test_window_restores_the_layers_around_each_centre_as_rome(planted, window, centres):
    tr = causal_trace(planted, facts_of(PLANTED[:1]), kinds=["mlp"], samples=4, window=window)
    effect = tr.at_role("last subject token")[0, 0]
    gap = float(tr.p_clean[0] - tr.p_corrupted[0])
    for layer in range(N_LAYERS):
        assert (effect[layer] > 0.7 * gap) == (layer in centres), (layer, effect)
    assert list(window_layers(0, 3, 4)) == [0, 1] and list(window_layers(3, 2, 4)) == [2, 3]


def test_null_restores_another_facts_state(planted_trace):
    tr = planted_trace
    assert (tr.donor >= 0).all() and (tr.donor != torch.arange(3)).all()
    own = tr.at_role("last subject token")[:, tr.kinds.index("mlp"), K]
    null = tr.null_effect()[:, tr.kinds.index("mlp"), K]
    assert (own > 0.7).all() and (null.mean() < 0.3 * own.mean())
    # each kind's null sits at its token: attention's at the last token, where its own effect is
    assert tr.null_roles == tuple(PEAK_ROLES[k] for k in tr.kinds) and PEAK_ROLES["attn"] == "last token"
    a = tr.kinds.index("attn")
    own_attn = tr.at_role("last token")[:, a, K + 1]
    assert (own_attn > 0.7).all() and (tr.null_effect()[:, a, K + 1].mean() < 0.3 * own_attn.mean())


def test_null_state_is_the_donors_at_the_kinds_token(pair, cities):
    """The null of attention equals a hand-written run that puts the donor's clean attn_out at its last token into
    the corrupted prompt's last token (one sample: the documented noise draws)."""
    model = pair.base
    tr = causal_trace(model, cities, kinds=["attn"], samples=1, window=1, seed=5)
    i, layer = 0, 2
    j = int(tr.donor[i])
    assert j >= 0 and cities.meta[j]["subject"] != cities.meta[i]["subject"]
    fi, fj = tr.facts[i], tr.facts[j]
    site = f"blocks.{layer}.hook_attn_out"
    got = {}
    with attached(model, [(site, lambda a, hook: got.__setitem__("x", a[0, -1].clone()))]), torch.no_grad():
        model(torch.tensor([fj.ids]))
    noise = _noise(cities.texts[i], cities.meta[i]["subject"], 1, fi.subject[1] - fi.subject[0],
                   model.cfg.d_model, 5)[0] * tr.noise_std

    def corrupt(act, hook):
        act = act.clone()
        act[0, fi.subject[0]:fi.subject[1]] += noise
        return act

    def put(act, hook):
        act = act.clone()
        act[0, -1] = got["x"]
        return act

    with attached(model, [("blocks.0.hook_resid_pre", corrupt), (site, put)]), torch.no_grad():
        p = float(model(torch.tensor([fi.ids]))[0, -1].softmax(-1)[fi.answer])
    assert float(tr.p_null[i, 0, layer]) == pytest.approx(p, abs=1e-5)


def test_null_donor_is_never_the_same_fact_in_another_phrasing(pair, cities):
    grouped = PromptSet("x", cities.texts, meta=[{**m, "group": m["subject"][:1]} for m in cities.meta])
    tr = causal_trace(pair.base, grouped, kinds=["resid"], samples=1, window=1)
    groups = [m["group"] for m in grouped.meta]
    for i, j in enumerate(tr.donor.tolist()):
        assert j < 0 or groups[j] != groups[i]
    assert (tr.donor >= 0).sum() >= 3


def test_subject_whitespace_is_not_the_subject(pair, cities):
    padded = PromptSet("x", cities.texts[:1], meta=[{**cities.meta[0], "subject": cities.meta[0]["subject"] + " "}])
    assert fact_tokens(pair.base, padded)[0].subject == fact_tokens(pair.base, cities[[0]])[0].subject
    with pytest.raises(ValueError, match="is only whitespace"):
        fact_tokens(pair.base, PromptSet("x", ["The city of Lyon is in"], meta=[{"subject": " ", "answer": " France"}]))


@pytest.mark.parametrize("answer, match", [("  France", "holds no letter or digit"), (' "France"', "holds no letter"),
                                           (" the Netherlands", "begins with the article")])
def test_answers_whose_first_token_is_not_the_fact_are_refused(pair, answer, match):
    facts = PromptSet("x", ["The city of Lyon is in"], meta=[{"subject": "Lyon", "answer": answer}])
    with pytest.raises(ValueError, match=match):
        fact_tokens(pair.base, facts)


# ------------------------------------------------------------------------------------------------ parity


def _noise(text: str, subject: str, samples: int, n_subject: int, d_model: int, seed: int) -> torch.Tensor:
    """The documented draws: a generator seeded by the first 8 bytes of sha256(seed, text, subject)."""
    digest = hashlib.sha256(f"{seed}\0{text}\0{subject}".encode()).digest()
    gen = torch.Generator().manual_seed(int.from_bytes(digest[:8], "little") & (2**63 - 1))
    return torch.randn((samples, n_subject, d_model), generator=gen)


def _by_hand(model, fact, text, subject, std, *, samples, seed, restore=None) -> float:
    """Mean p(answer) over noisy runs of one prompt with hooks written here: noise added at ``hook_embed``,
    and ``restore = (hook name, pos)`` given the clean run's value there."""
    ids = torch.tensor([fact.ids])
    clean = {}
    if restore is not None:
        def keep(act, hook):
            clean["value"] = act[0, restore[1]].clone()
        with attached(model, [(restore[0], keep)]), torch.no_grad():
            model(ids)
    draws = _noise(text, subject, samples, fact.subject[1] - fact.subject[0], model.cfg.d_model, seed) * 3 * std
    ps = []
    for draw in draws:
        def corrupt(act, hook, draw=draw):
            out = act.clone()
            out[0, fact.subject[0]:fact.subject[1]] += draw
            return out

        def put(act, hook):
            out = act.clone()
            out[0, restore[1]] = clean["value"]
            return out
        hooks = [("hook_embed", corrupt)] + ([(restore[0], put)] if restore else [])
        with attached(model, hooks), torch.no_grad():
            logits = model(ids)
        ps.append(float(logits[0, -1].float().softmax(-1)[fact.answer]))
    return sum(ps) / len(ps)


def test_restored_probability_matches_a_hand_written_hook(pair, cities):
    model, facts = pair.base, cities[[0, 4]]
    tr = causal_trace(model, facts, samples=3, window=3, seed=5)
    std = subject_embedding_std(model, facts)
    assert tr.embedding_std == pytest.approx(std) and tr.noise_std == pytest.approx(3 * std)
    for i in range(2):
        f, text, subject = tr.facts[i], facts.texts[i], facts.meta[i]["subject"]
        hand = lambda restore: _by_hand(model, f, text, subject, std, samples=3, seed=5, restore=restore)  # noqa
        assert float(tr.p_corrupted[i]) == pytest.approx(hand(None), abs=1e-5)
        last, last_subject = len(f) - 1, f.last_subject
        # resid_post of layer 2 = resid_pre of layer 3
        assert float(tr.p_restored[i, 0, 2, last_subject]) == pytest.approx(
            hand(("blocks.3.hook_resid_pre", last_subject)), abs=1e-5)
        # attention and MLP outputs of one layer (window 1; the window of 3 is checked by hand below)
        one = causal_trace(model, facts[[i]], kinds=["attn", "mlp"], samples=3, window=1, seed=5, embedding_std=std)
        assert float(one.p_restored[0, 0, 4, last]) == pytest.approx(
            hand(("blocks.4.attn.hook_out", last)), abs=1e-5)
        assert float(one.p_restored[0, 1, 1, last_subject]) == pytest.approx(
            hand(("blocks.1.mlp.hook_out", last_subject)), abs=1e-5)
    # before the subject: the corrupted run, exactly
    f = tr.facts[0]
    assert torch.equal(tr.p_restored[0, :, :, :f.subject[0]],
                       tr.p_corrupted[0].expand(3, model.cfg.n_layers, f.subject[0]))


def test_window_of_three_restores_three_layers_by_hand(pair, cities):
    """mlp with window 3 centred on layer 2 restores the MLP outputs of layers 1, 2 and 3 at once."""
    model, facts = pair.base, cities[[1]]
    std = subject_embedding_std(model, facts)
    tr = causal_trace(model, facts, kinds=["mlp"], samples=2, window=3, seed=1, embedding_std=std)
    f, t = tr.facts[0], tr.facts[0].last_subject
    ids = torch.tensor([f.ids])
    names = [f"blocks.{layer}.mlp.hook_out" for layer in (1, 2, 3)]
    clean = {}
    with attached(model, [(n, lambda act, hook: clean.__setitem__(hook.name, act[0, t].clone())) for n in names]):
        with torch.no_grad():
            model(ids)
    draws = _noise(facts.texts[0], facts.meta[0]["subject"], 2, f.subject[1] - f.subject[0], model.cfg.d_model, 1)
    ps = []
    for draw in draws * 3 * std:
        def corrupt(act, hook, draw=draw):
            out = act.clone()
            out[0, f.subject[0]:f.subject[1]] += draw
            return out

        def put(act, hook):
            out = act.clone()
            out[0, t] = clean[hook.name]
            return out
        with attached(model, [("hook_embed", corrupt)] + [(n, put) for n in names]), torch.no_grad():
            ps.append(float(model(ids)[0, -1].softmax(-1)[f.answer]))
    assert float(tr.p_restored[0, 0, 2, t]) == pytest.approx(sum(ps) / 2, abs=1e-5)


def test_batched_trace_equals_one_prompt_at_a_time(pair, cities):
    model = pair.base
    std = subject_embedding_std(model, cities)
    together = causal_trace(model, cities, samples=2, window=3, batch_size=37, embedding_std=std, null=False)
    for i in range(len(cities)):
        alone = causal_trace(model, cities[[i]], samples=2, window=3, batch_size=4096, embedding_std=std, null=False)
        n = len(alone.facts[0])
        assert torch.allclose(together.p_restored[i, :, :, :n], alone.p_restored[0], atol=1e-5)
        assert torch.isnan(together.p_restored[i, :, :, n:]).all()
        assert together.p_corrupted[i] == pytest.approx(float(alone.p_corrupted[0]), abs=1e-5)
        assert together.p_clean[i] == pytest.approx(float(alone.p_clean[0]), abs=1e-5)


def test_trace_is_seeded(pair, cities):
    facts = cities[[0, 1]]
    a = causal_trace(pair.base, facts, kinds=["resid"], samples=2, seed=3, window=1)
    b = causal_trace(pair.base, facts, kinds=["resid"], samples=2, seed=3, window=1)
    c = causal_trace(pair.base, facts, kinds=["resid"], samples=2, seed=4, window=1)
    assert torch.equal(a.p_restored.nan_to_num(-1), b.p_restored.nan_to_num(-1))
    assert torch.equal(a.p_null, b.p_null) and torch.equal(a.donor, b.donor) and (a.donor >= 0).all()
    assert not torch.equal(a.p_corrupted, c.p_corrupted)


def test_roles_restrict_the_positions_restored(pair, cities):
    facts = cities[[0]]
    full = causal_trace(pair.base, facts, kinds=["resid"], samples=2, window=1, null=False)
    last = causal_trace(pair.base, facts, kinds=["resid"], samples=2, window=1, null=False,
                        roles=["last subject token"], embedding_std=full.embedding_std)
    t, f = full.facts[0].last_subject, full.facts[0]
    assert torch.allclose(last.p_restored[0, :, :, t], full.p_restored[0, :, :, t], atol=1e-6)
    assert torch.isnan(last.p_restored[0, :, :, t + 1:len(f)]).all()


def test_normalised_effect_divides_by_the_corruption_gap(planted_trace):
    tr = planted_trace
    gap = tr.p_clean - tr.p_corrupted
    assert torch.allclose(tr.normalised_effect(), tr.indirect_effect() / gap[:, None, None, None], equal_nan=True)


# ------------------------------------------------------------------------------------------ cross-model


def test_a_model_patched_into_itself_keeps_everything(pair, cities):
    cp = cross_model_patch(pair.post, pair.post, cities)
    assert torch.allclose(cp.survival(), torch.ones(len(cities), pair.n_layers), atol=1e-5)
    assert torch.allclose(cp.p_target, cp.p_source)
    # the null moves the state by as much as the source differs from it: nothing
    assert torch.allclose(cp.null_survival(), torch.ones(len(cities), pair.n_layers), atol=1e-5)
    assert (cp.distance == 0).all()


def test_cross_patch_null_is_a_random_move_of_the_sources_size(pair, cities):
    """p_null equals a hand-written run with the documented draw: target + |source - target| u, u a unit vector
    from a generator seeded by sha256(seed, text, layer); distance is |source - target| / |target|."""
    cp = cross_model_patch(pair.base, pair.post, cities, layers=[3], seed=7)
    facts = fact_tokens(pair.post, cities)
    i, site = 2, "blocks.3.hook_resid_post"
    ids = torch.tensor([facts[i].ids])
    got = {}
    for name, model in pair:
        with attached(model, [(site, lambda a, hook, name=name: got.__setitem__(name, a[0].clone()))]):
            with torch.no_grad():
                model(ids)
    digest = hashlib.sha256(f"7\0{cities.texts[i]}\0{3}".encode()).digest()
    gen = torch.Generator().manual_seed(int.from_bytes(digest[:8], "little") & (2**63 - 1))
    u = torch.randn(got["post"].shape, generator=gen, dtype=torch.float64)
    u = (u / u.norm(dim=-1, keepdim=True)).float()
    moved = got["post"] + (got["base"] - got["post"]).norm(dim=-1, keepdim=True) * u
    with attached(pair.post, [(site, lambda a, hook: moved[None])]), torch.no_grad():
        p = float(pair.post(ids)[0, -1].softmax(-1)[facts[i].answer])
    assert float(cp.p_null[i, 0]) == pytest.approx(p, abs=1e-5)
    distance = ((got["base"] - got["post"]).norm(dim=-1) / got["post"].norm(dim=-1)).mean()
    assert float(cp.distance[i, 0]) == pytest.approx(float(distance), rel=1e-4)
    # a random move of that size is not the base model's state: it loses more of post's answer on these facts
    assert float(cp.null_survival().mean()) < float(cp.survival().mean())


def test_cross_patch_matches_a_hand_written_hook_and_batches(pair, cities):
    cp = cross_model_patch(pair.base, pair.post, cities, layers=[1, 4], batch_size=3)
    one = cross_model_patch(pair.base, pair.post, cities, layers=[1, 4], batch_size=1)
    assert torch.allclose(cp.p_patched, one.p_patched, atol=1e-5) and torch.allclose(cp.p_null, one.p_null, atol=1e-5)
    facts = fact_tokens(pair.post, cities)
    for i in (0, 4):
        ids = torch.tensor([facts[i].ids])
        got = {}
        with attached(pair.base, [("blocks.2.hook_resid_pre", lambda a, hook: got.__setitem__("x", a.clone()))]):
            with torch.no_grad():
                pair.base(ids)  # resid_post of layer 1 = resid_pre of layer 2
        with attached(pair.post, [("blocks.2.hook_resid_pre", lambda a, hook: got["x"])]), torch.no_grad():
            p = float(pair.post(ids)[0, -1].softmax(-1)[facts[i].answer])
        assert float(cp.p_patched[i, 0]) == pytest.approx(p, abs=1e-5)
        assert float(cp.survival()[i, 0]) == pytest.approx(p / float(cp.p_target[i]), rel=1e-4)
    p_base, _ = fact_predictions(pair.base, cities)
    assert torch.allclose(cp.p_source, p_base, atol=1e-5)


# ------------------------------------------------------------------------------------------------ errors


def test_bad_inputs_are_refused(pair, planted, cities, monkeypatch):
    model = pair.base
    with pytest.raises(ValueError, match="subject 'Rome' not found in the prompt"):
        causal_trace(model, facts_of([("The city of Lyon is in", "Rome", " France")]))
    with pytest.raises(ValueError, match="occurs more than once"):
        causal_trace(model, facts_of([("Lyon or Lyon is in", "Lyon", " France")]))
    with pytest.raises(ValueError, match="unknown kind"):
        causal_trace(model, cities, kinds=["mlp", "ffn"])
    for window in (0, model.cfg.n_layers + 1):
        with pytest.raises(ValueError, match="window must be in 1..6"):
            causal_trace(model, cities, window=window)
    with pytest.raises(TypeError, match="window must be an int"):
        causal_trace(model, cities, window=1.5)
    for noise in (0, -1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="noise must be a finite number > 0"):
            causal_trace(model, cities, noise=noise)
    with pytest.raises(ValueError, match="samples must be >= 1"):
        causal_trace(model, cities, samples=0)
    with pytest.raises(ValueError, match="has no meta"):
        causal_trace(model, PromptSet("x", ["The city of Lyon is in"], meta=[{"subject": "Lyon"}]))
    with pytest.raises(ValueError, match="unknown role"):
        causal_trace(model, cities, roles=["subject"])
    with pytest.raises(ValueError, match="facts is empty"):
        fact_tokens(model, PromptSet("x", [], meta=[]))
    with pytest.raises(TypeError, match="facts must be a PromptSet"):
        causal_trace(model, ["The city of Lyon is in"])
    # a tokenizer with a token the model has no logit for
    tok = copy.deepcopy(interp.models.tokenizer_of(model))
    tok.add_tokens(["Zyzzyva"])
    monkeypatch.setattr(model, "interp_tokenizer", tok)
    with pytest.raises(ValueError, match="answer token id 1024 .* out of the model's vocabulary of 1024"):
        causal_trace(model, facts_of([("The city of Lyon is in", "Lyon", "Zyzzyva")]))
    monkeypatch.undo()
    with pytest.raises(ValueError, match="tokenizers differ"):
        cross_model_patch(planted, model, cities)
    with pytest.raises(ValueError, match="out of range"):
        cross_model_patch(pair.base, pair.post, cities, layers=[6])


def test_an_article_is_refused_only_as_the_answers_whole_first_word():
    from interp.tracing import _check_answer_token

    _check_answer_token(0, " Athens", " A")  # a small vocabulary splits " A" off " Athens": not an article
    _check_answer_token(0, " Ankara", " An")
    with pytest.raises(ValueError, match="begins with the article"):
        _check_answer_token(0, " The Hague", " The")
