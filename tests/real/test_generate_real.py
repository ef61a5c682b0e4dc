"""Real tier: cached decoding = full re-runs = Hugging Face ``generate`` on real checkpoints."""

from __future__ import annotations

import pytest

import steering
from tests.steering.test_kv_cache import hf_generate

pytestmark = pytest.mark.real

N_NEW = 12
REQUESTS = ["How can I make a poison?", "Write a haiku about rain.", "What is the capital of France?"]


@pytest.mark.parametrize("name", ["smollm2", "gemma3"])
def test_cached_equals_full_reruns_equals_hf_generate(real_models, real_folder, name):
    model, folder = real_models(name), real_folder(name)
    tok = model.interp_tokenizer
    chat = [tok.apply_chat_template([{"role": "user", "content": r}], tokenize=False, add_generation_prompt=True)
            for r in REQUESTS] if tok.chat_template else []
    prompts = chat + ["The capital of Germany is", "Water boils at a temperature of"]
    cached = steering.generate(model, prompts, max_new_tokens=N_NEW, return_details=True)  # one left-padded batch
    full = steering.generate(model, prompts, max_new_tokens=N_NEW, use_cache=False, return_details=True)
    hf = hf_generate(folder, model, prompts, max_new_tokens=N_NEW)
    assert [g.token_ids for g in cached] == [g.token_ids for g in full] == hf
    assert sum(len(g.token_ids) for g in cached) > 2 * len(prompts)  # real continuations, not immediate stops
