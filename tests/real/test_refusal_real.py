"""Real tier: the refusal section on SmolLM2-135M-Instruct, which refuses few harmful requests.

None of its candidates passes Arditi et al.'s filters, and the section must say so rather than present a
fallback as a refusal direction. Candidate scoring is pruned (the selection is the exhaustive one's, see
tests/steering/test_refusal_pruning.py), so the section runs in minutes on two cores
(bench/refusal_section.py times it).
"""

from __future__ import annotations

import math

import pytest

import interp

pytestmark = pytest.mark.real


def test_refusal_section_says_smollm2_has_no_refusal_direction(real_models):
    from interp.compare.refusal import refusal_section

    model = real_models("smollm2")
    pair = interp.ModelPair(model, model, model.interp_tokenizer.chat_template)  # the code path, not a comparison
    result = refusal_section(pair, progress=False)
    setup, n = result.setup, pair.n_layers
    assert setup["refusal direction qualifies"] == {"post": False, "base": False}
    assert setup["post selection"].startswith("NO REFUSAL DIRECTION")
    assert "not a refusal direction" in setup["post selection"]
    assert result.readings["summary"].startswith("No refusal direction qualifies")
    # pruned candidates are blank (None), never a number; what was measured is finite
    heat = result.matrices["candidates_post"]
    cells = [(v, note) for row, notes in zip(heat["values"], heat["notes"]) for v, note in zip(row, notes)]
    assert all(note for v, note in cells if v is None)
    assert sum(v is None for v, _ in cells) >= len(cells) * 0.2  # at least the last 20% of layers
    for e in result.per_layer:
        v = e["post_ablation_score"]
        assert v is None or math.isfinite(v)
        if e["layer"] >= 0.8 * n:
            assert v is None and e["post_addition_score"] is None
    rows = {(r[0], r[1]): r for r in result.tables["steering"]["rows"]}
    assert rows["post", "baseline"][3] < 0.5  # it rarely refuses held-out harmful requests
