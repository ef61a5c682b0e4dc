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
