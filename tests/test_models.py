"""interp.load_pair / load_model: booting, tokenizer checks, chat formatting, BOS policy, bad input."""

from __future__ import annotations

import shutil

import pytest
import torch

import interp
from interp.tokens import encode, pad_batch


def test_pair_boots_every_family(tiny_pairs, family):
    pair = tiny_pairs[family]
    assert pair.base.cfg.n_layers == pair.post.cfg.n_layers == 3
    assert pair.base.interp_source["path"].endswith("base")
    assert [name for name, _ in pair] == ["base", "post"]
    # Same weights processing: the bridge's raw HF numerics, so base and post differ only by their weights.
    ids = torch.tensor([encode(pair.tokenizer, ["The city of Paris is in France."])[0].ids])
    with torch.inference_mode():
        lb, lp = pair.base(ids), pair.post(ids)
    assert lb.shape == lp.shape and not torch.allclose(lb, lp)
    info = pair.info()
    assert info["base"]["n_layers"] == 3 and len(info["vocab_sha256"]) == 64


def test_boot_matches_huggingface(tiny_dirs, tiny_pairs, family):
    from transformers import AutoModelForCausalLM

    hf = AutoModelForCausalLM.from_pretrained(tiny_dirs[family][1], attn_implementation="eager").eval()
    ids = torch.tensor([encode(tiny_pairs[family].tokenizer, ["Madrid is in Spain."])[0].ids])
    with torch.inference_mode():
        torch.testing.assert_close(tiny_pairs[family].post(ids), hf(ids).logits, atol=1e-4, rtol=1e-4)


def test_chat_format_uses_post_template(tiny_pairs):
    pair = tiny_pairs["qwen2"]
    ps = pair.format(["How do I bake bread?"], "chat")
    expected = pair.tokenizer.apply_chat_template(
        [{"role": "user", "content": "How do I bake bread?"}], tokenize=False, add_generation_prompt=True
    )
    assert ps.texts == (expected,)
    assert pair.chat_templates["post"] == pair.chat_template
    assert ps.meta[0]["raw_text"] == "How do I bake bread?"
    assert pair.format(["x"], "raw").texts == ("x",)
    with pytest.raises(ValueError, match="style must be 'raw' or 'chat'"):
        pair.format(["x"], "markdown")


def test_chat_format_without_template_is_refused(tiny_pairs):
    pair = tiny_pairs["gpt2"]
    assert pair.chat_template is None and pair.chat_templates == {"base": None, "post": None}
    with pytest.raises(ValueError, match="has no chat template"):
        pair.format(["hello"], "chat")


@pytest.mark.parametrize(
    "family, expect_bos",
    [("gpt2", True), ("llama", True), ("gemma2", True), ("qwen2", False)],
)
def test_bos_policy_never_doubles(tiny_pairs, family, expect_bos):
    pair = tiny_pairs[family]
    tok = pair.tokenizer
    raw = encode(tok, ["Paris is in France."])[0]
    assert raw.has_bos == expect_bos and raw.bos_added == expect_bos
    if expect_bos:
        assert raw.ids[0] == tok.bos_token_id and raw.ids[1] != tok.bos_token_id
    else:
        assert tok.bos_token_id is None  # Qwen-style: nothing is substituted for a missing BOS
    assert encode(tok, ["Paris is in France."], bos="never")[0].ids == raw.ids[int(expect_bos):]
    if pair.chat_template:
        chat = encode(tok, pair.format(["Paris?"], "chat").texts)[0]
        n_bos = sum(i == tok.bos_token_id for i in chat.ids) if expect_bos else 0
        assert n_bos == int(expect_bos)  # the template's own BOS, never a second one
        assert not chat.bos_added


def test_pad_batch_left_and_right():
    from interp.tokens import Encoding

    encs = [Encoding((5, 6, 7), ((0, 1),) * 3, False, False), Encoding((8,), ((0, 1),), False, False)]
    left = pad_batch(encs, pad_id=0, padding_side="left")
    assert left.input_ids.tolist() == [[5, 6, 7], [0, 0, 8]]
    assert left.attention_mask.tolist() == [[1, 1, 1], [0, 0, 1]]
    assert left.start.tolist() == [0, 2] and left.length.tolist() == [3, 1]
    right = pad_batch(encs, pad_id=0, padding_side="right")
    assert right.input_ids.tolist() == [[5, 6, 7], [8, 0, 0]] and right.start.tolist() == [0, 0]
    with pytest.raises(ValueError, match="padding_side"):
        pad_batch(encs, pad_id=0, padding_side="middle")


def test_length_batches_group_similar_lengths_and_cover_every_row():
    from interp.tokens import length_batches

    lengths = [9, 3, 7, 3, 12, 5, 1]
    batches = length_batches(lengths, 3)
    assert batches == [[6, 1], [3, 5, 2], [0, 4]]  # lengths [1, 3], [3, 5, 7], [9, 12]; ties keep their order
    assert [len(b) for b in length_batches([1] * 33, 32)] == [16, 17]
    assert length_batches([4, 4, 4], 1) == [[0], [1], [2]] and length_batches([], 8) == []
    # padded slots: never more than in prompt order, here far fewer
    cost = lambda bs: sum(len(b) * max(lengths[i] for i in b) for b in bs)  # noqa: E731
    assert cost(batches) < cost([[0, 1, 2], [3, 4, 5], [6]])
    with pytest.raises(ValueError, match="batch_size must be >= 1, got 0"):
        length_batches(lengths, 0)


def test_the_shape_read_before_the_boot_is_the_booted_pairs(tiny_dirs, tiny_pairs, family, tmp_path):
    """read_shape gives what the booted pair's shape is, from configs alone; None where it cannot tell (a hub id not
    cached, a .gguf file, two models of different shapes) rather than a guess."""
    from interp.models import ModelShape, read_shape
    from interp.testing import build_tiny_model

    pair = tiny_pairs[family]
    assert read_shape(*tiny_dirs[family]) == pair.shape == ModelShape(3, pair.base.cfg.d_model,
                                                                         pair.base.cfg.d_mlp)
    assert read_shape() == interp.load_pair().shape == ModelShape(6, 128, 256)
    assert read_shape("nobody/not-cached-anywhere", "nobody/not-cached-either") is None
    assert read_shape(tmp_path / "model.gguf", tmp_path / "model.gguf") is None
    deeper = build_tiny_model(family, tmp_path / "deep", n_layers=4)
    assert read_shape(tiny_dirs[family][0], deeper) is None
    assert read_shape(tiny_dirs[family][0]) is None  # base without post: load_pair says what is wrong


def test_mismatched_pair_is_rejected(tiny_dirs):
    with pytest.raises(ValueError, match=r"tokenizers differ: base has 400 tokens, post has 400; 5 only in base .* 395 with different ids"):
        interp.load_pair(tiny_dirs["gpt2"][0], tiny_dirs["llama"][1], device="cpu")


def test_pair_of_different_depth_is_rejected(tiny_dirs, tmp_path):
    from interp.testing import build_tiny_model

    deeper = build_tiny_model("llama", tmp_path / "deep", n_layers=4)
    with pytest.raises(ValueError, match="differ in n_layers"):
        interp.load_pair(tiny_dirs["llama"][0], deeper, device="cpu")


def test_bad_model_sources(tmp_path, monkeypatch, tiny_dirs):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        interp.load_model(tmp_path / "nope")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        interp.load_model("./also/not/here")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no config.json"):
        interp.load_model(tmp_path / "empty")
    pickled = tmp_path / "pickled"
    shutil.copytree(tiny_dirs["llama"][0], pickled)
    (pickled / "model.safetensors").unlink()
    (pickled / "pytorch_model.bin").write_bytes(b"not loaded")
    with pytest.raises(ValueError, match=r"only pickle weights \(pytorch_model.bin\).*safetensors only"):
        interp.load_model(pickled)
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(OSError, match="could not fetch model 'some-org/some-model' from the Hugging Face hub"):
        interp.load_model("some-org/some-model")


def test_load_pair_needs_both_or_neither():
    with pytest.raises(ValueError, match="give both base and post"):
        interp.load_pair("only-base")


def test_missing_organism_weights_are_reported(monkeypatch, tmp_path):
    from interp import organism

    monkeypatch.setattr(organism, "ROOT", tmp_path / "weights")
    with pytest.raises(FileNotFoundError, match="bundled model organism is missing.*interp organism train"):
        interp.load_pair()


def test_device_map_boots_through_accelerate_with_identical_numerics(tiny_dirs):
    import torch

    base, post = tiny_dirs["llama"]
    ref = interp.load_pair(base, post, device="cpu")
    for device_map in ("auto", {"": "cpu"}):
        pair = interp.load_pair(base, post, device_map=device_map)
        got = interp.collect(pair.post, ["hello world", "a b c"], ["resid_post", "mlp_out"], progress=False)
        want = interp.collect(ref.post, ["hello world", "a b c"], ["resid_post", "mlp_out"], progress=False)
        for site in ("resid_post", "mlp_out"):
            torch.testing.assert_close(got[site], want[site], rtol=0, atol=0)
    with pytest.raises(ValueError, match="give device or device_map, not both"):
        interp.load_model(base, device="cpu", device_map="auto")
    if torch.cuda.device_count() < 4:
        with pytest.raises(ValueError, match="n_devices=4 needs that many CUDA devices"):
            interp.load_model(base, n_devices=4)
