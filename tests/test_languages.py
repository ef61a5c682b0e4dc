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


def _accuracy_figure(per_layer):
    """The language section's identity figure drawn from ``per_layer``: (plot spec, {panel title: line names})."""
    from interp.compare.language import _plots
    from interp.report import ConceptResult, _line

    plot = _plots(("en", "fr", "de", "es"), per_layer)[0]
    fig = _line(ConceptResult("language", [e["layer"] for e in per_layer], per_layer), plot)
    panels = {}
    for t in fig.data:
        if t.fill != "toself":  # not an interval band
            panels.setdefault(t.yaxis, []).append(t.name)
    titles = [a.text for a in fig.layout.annotations]
    return plot, dict(zip(titles, panels.values())), fig


def _identity_rows(own: float, transfer: float) -> list[dict]:
    rows = []
    for layer in range(3):
        e = {"layer": layer, "base_accuracy": own, "post_accuracy": own, "transfer_base_to_post": transfer,
             "transfer_post_to_base": transfer, "base_accuracy_null": 0.3, "post_accuracy_null": 0.25}
        for lang in ("fr", "de", "es"):
            e[f"cosine_base_post_{lang}"], e[f"cosine_base_post_{lang}_null"] = 0.9, 0.2
        rows.append(e)
    return rows


def test_identity_accuracies_at_ceiling_each_get_a_panel_and_are_named():
    """Four accuracies at 1.0 would lie on one line: each is drawn in a panel of its own (one accuracy line per
    panel, beside its null), with post − base as a difference panel, and the caption and panel titles say which
    are at ceiling."""
    from interp.compare.language import READINGS, _ceiling_note

    per_layer = _identity_rows(1.0, 1.0)
    plot, panels, fig = _accuracy_figure(per_layer)
    accuracies = {"base probe", "post probe", "base probe → post", "post probe → base"}
    assert panels == {
        "base probe on base (1.00 at every layer)": ["base probe", "null: base probe, shuffled labels"],
        "post probe on post (1.00 at every layer)": ["post probe", "null: post probe, shuffled labels"],
        "base probe on post (transfer) (1.00 at every layer)": ["base probe → post"],
        "post probe on base (transfer) (1.00 at every layer)": ["post probe → base"],
        "post − base accuracy (own probes)": ["post − base (own probes)"],
        "cosine of base and post directions": [
            "cosine en→fr", "cosine en→de", "cosine en→es",
            *(f"null: cosine en→{x}, random directions (95th percentile)" for x in ("fr", "de", "es"))]}
    assert all(len(accuracies & set(names)) <= 1 for names in panels.values())  # no two accuracies share an axis
    assert all(p.get("yaxis") for p in plot["panels"])
    assert fig.layout.yaxis.title.text == "held-out accuracy"
    assert fig.layout.yaxis5.title.text == "accuracy, post − base"
    diff = next(t for t in fig.data if t.name == "post − base (own probes)")
    assert list(diff.y) == [0.0, 0.0, 0.0]
    note = _ceiling_note(per_layer)
    assert note == (" At ceiling (1.00 at every layer): base probe, post probe, base probe → post, post probe → "
                    "base; each is drawn in a panel of its own, as the lines would coincide on one axis.")
    assert READINGS["accuracy"].endswith("directions.")
    # below ceiling, nothing is said to be at it
    plot, panels, _ = _accuracy_figure(_identity_rows(0.97, 0.8))
    assert "base probe on base" in panels and not any("1.00" in t for t in panels)
    assert _ceiling_note(_identity_rows(0.97, 0.8)) == ""
    note = _ceiling_note(_identity_rows(0.97, 1.0))
    assert note.startswith(" At ceiling (1.00 at every layer): base probe → post, post probe → base; each is ")


def _planted_rows(monkeypatch, continuations: list[str]) -> tuple[list, list, object]:
    """``(own row, null row, tokenizer)``: the language section's steering rows (``post direction`` and the random
    null) toward French, generation and KL replaced by the planted ``continuations`` (the null's stay English)."""
    from types import SimpleNamespace

    import steering.generation
    import steering.metrics

    import interp
    from interp.compare import language

    from steering import Generation

    tok = interp.load_pair().tokenizer

    def generated(texts):  # as generated: the records with their token ids
        return [Generation("", t, tuple(tok(t, add_special_tokens=False)["input_ids"])) for t in texts]

    planted = {"own": generated(continuations), "null": generated([" is on the table."] * len(continuations))}
    which = iter(["own", "null"])
    monkeypatch.setattr(steering.generation, "greedy_with_first_step",
                        lambda *a, **k: (planted[next(which)], torch.zeros(len(continuations), 8)))
    monkeypatch.setattr(steering.metrics, "kl_divergence", lambda *a, **k: torch.full((3,), 0.25))
    run = SimpleNamespace(own=LanguageTokens(("en", "fr"), {"en": frozenset({0}), "fr": frozenset({1})}),
                          langs=("en", "fr"), pair=SimpleNamespace(tokenizer=tok))
    ref = SimpleNamespace(model=None, prompts=None, neutral=None, neutral_logprobs=None, batch={}, target="post")
    rows = [language._steered_row(run, ref, "fr", (0.0, 0.0, 0.0), label, [], 6)
            for label in ("post direction", "random direction (null)")]
    return *rows, tok


def test_a_degenerate_continuation_is_not_counted_in_the_target_language(monkeypatch):
    """langid.py calls "est est est est" French, but it is a loop, not French text: the steering table's and the
    headline's lead figure count a continuation in the target only while it is fluent (notebook 04's rule:
    ``is_fluent`` and ``language_of``); the share of all continuations, fluent or not, follows it."""
    from types import SimpleNamespace

    from interp.compare.language import STEERING_COLUMNS, _summary
    from steering.metrics import is_fluent, language_of

    gens = ["est est est est", " est est est est", " dort sur la table.", " is on the table.", " sleeps here."]
    own, null, tok = _planted_rows(monkeypatch, gens)
    assert language_of(gens[0], ("en", "fr")) == "fr"  # langid.py alone would count the loop as French
    assert not is_fluent(tok(gens[0], add_special_tokens=False)["input_ids"])
    notebook = sum(is_fluent(tok(g, add_special_tokens=False)["input_ids"]) and language_of(g, ("en", "fr")) == "fr"
                   for g in gens) / len(gens)
    row = dict(zip(STEERING_COLUMNS, own))
    assert STEERING_COLUMNS[3:6] == ("continuations fluent and in target after",
                                     "continuations fluent and in target after, 95% CI", "fluent after")
    assert row["continuations fluent and in target after"] == notebook == 0.2  # the loops are not French
    assert row["fluent after"] == "3 of 5" and row["in target among fluent after"] == pytest.approx(1 / 3)
    assert row["continuations in target after, all (fluent or not)"] == 0.6  # the loops count here only
    lo, hi = row["continuations fluent and in target after, 95% CI"]
    assert lo < 0.2 < hi
    summary = _summary(SimpleNamespace(window=[4, 5], langs=("en", "fr")), [own, null], len(gens))
    lead = summary.index("continuations fluent and in fr 0.20 [")
    assert lead < summary.index("all continuations in fr, fluent or not, 0.60 [")
    assert "continuations in fr 0.60" not in summary[:lead]


def test_with_no_fluent_continuation_the_share_among_fluent_ones_is_undefined(monkeypatch):
    """Every continuation loops: none is fluent French text (0.00, a count), and the share in French among the
    fluent ones has no continuation to read from, so it is undefined and says why, in the table and the headline."""
    from types import SimpleNamespace

    from interp.compare.language import STEERING_COLUMNS, _summary

    own, null, _ = _planted_rows(monkeypatch, [" est est est est"] * 5)
    row = dict(zip(STEERING_COLUMNS, own))
    assert row["continuations fluent and in target after"] == 0.0  # none is fluent French text
    assert row["in target among fluent after"] == "undefined: no fluent continuation"
    assert row["in target among fluent after, 95% CI"] is None
    assert row["continuations in target after, all (fluent or not)"] == 1.0
    summary = _summary(SimpleNamespace(window=[4, 5], langs=("en", "fr")), [own, null], 5)
    assert "0 of 5 fluent, share in fr among them undefined: no fluent continuation" in summary
