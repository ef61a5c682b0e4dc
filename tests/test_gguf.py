"""GGUF input: header checks before conversion, the cached safetensors folder, booting it.

The GGUF files here are written in the test from a tiny random Llama
(:func:`interp.testing.build_tiny_model`) with ``gguf.GGUFWriter``, laid out as
llama.cpp's converter lays them out (its tensor names, its Q/K row permutation,
a byte-level BPE tokenizer), so no real weights are needed.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

import interp
from interp import gguf as igguf
from interp.testing import build_tiny_model

gguf = pytest.importorskip("gguf")


def _permute(w: np.ndarray, n_head: int) -> np.ndarray:
    """llama.cpp's Q/K row order (interleaved rotary halves); transformers undoes it on load."""
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def write_tiny_gguf(
    hf_dir: Path, out: Path, *, arch: str = "llama", qtype: str = "F32", int_embedding: bool = False
) -> Path:
    """Write the tiny Llama in ``hf_dir`` as a GGUF file.

    ``qtype``: ``"F32"`` or ``"Q8_0"`` for the 2-D weights (norms stay F32);
    ``int_embedding``: store the embedding as an I32 tensor (a type nothing dequantises);
    ``arch``: the ``general.architecture`` written (the tensors stay Llama's).
    """
    from safetensors.torch import load_file
    from transformers import AutoTokenizer

    cfg = json.loads((hf_dir / "config.json").read_text())
    tok = AutoTokenizer.from_pretrained(hf_dir)
    n_layers, n_head, n_kv = cfg["num_hidden_layers"], cfg["num_attention_heads"], cfg["num_key_value_heads"]
    w = gguf.GGUFWriter(str(out), arch)
    w.add_name("tiny llama")
    w.add_block_count(n_layers)
    w.add_context_length(cfg["max_position_embeddings"])
    w.add_embedding_length(cfg["hidden_size"])
    w.add_feed_forward_length(cfg["intermediate_size"])
    w.add_head_count(n_head)
    w.add_head_count_kv(n_kv)
    w.add_layer_norm_rms_eps(cfg["rms_norm_eps"])
    w.add_rope_freq_base(float(cfg.get("rope_theta") or cfg["rope_parameters"]["rope_theta"]))
    w.add_rope_dimension_count(cfg["hidden_size"] // n_head)
    w.add_vocab_size(cfg["vocab_size"])
    w.add_file_type(gguf.LlamaFileType.ALL_F32 if qtype == "F32" else gguf.LlamaFileType.MOSTLY_Q8_0)
    vocab = sorted(tok.get_vocab().items(), key=lambda kv: kv[1])
    assert [i for _, i in vocab] == list(range(len(vocab)))
    special = set(tok.all_special_ids)
    merges = json.loads(tok.backend_tokenizer.to_str())["model"]["merges"]
    w.add_tokenizer_model("gpt2")
    w.add_token_list([t for t, _ in vocab])
    w.add_token_types([gguf.TokenType.CONTROL if i in special else gguf.TokenType.NORMAL for _, i in vocab])
    w.add_token_merges([m if isinstance(m, str) else " ".join(m) for m in merges])
    w.add_bos_token_id(tok.bos_token_id)
    w.add_eos_token_id(tok.eos_token_id)
    w.add_add_bos_token(True)
    if tok.chat_template:
        w.add_chat_template(tok.chat_template)
    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.LLAMA, n_layers)
    for hf_name, t in load_file(hf_dir / "model.safetensors").items():
        a = t.float().numpy()
        if hf_name.endswith("q_proj.weight"):
            a = _permute(a, n_head)
        elif hf_name.endswith("k_proj.weight"):
            a = _permute(a, n_kv)
        name = names.get_name(hf_name, try_suffixes=(".weight", ".bias"))
        if int_embedding and name == "token_embd.weight":
            w.add_tensor(name, np.zeros(a.shape, dtype=np.int32))
        elif qtype != "F32" and a.ndim == 2:
            q = gguf.GGMLQuantizationType[qtype]
            w.add_tensor(name, gguf.quantize(a, q), raw_dtype=q)
        else:
            w.add_tensor(name, a)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return out


@pytest.fixture(scope="module")
def tiny_llama(tmp_path_factory) -> Path:
    return build_tiny_model("llama", tmp_path_factory.mktemp("hf") / "llama", n_layers=2)


@pytest.fixture(scope="module")
def tiny_gguf(tiny_llama, tmp_path_factory) -> Path:
    return write_tiny_gguf(tiny_llama, tmp_path_factory.mktemp("gguf") / "tiny-f32.gguf")


@pytest.fixture(scope="module")
def converted(tiny_gguf, tmp_path_factory) -> tuple[Path, Path]:
    """(cache_dir, converted folder) of the F32 tiny GGUF."""
    cache = tmp_path_factory.mktemp("cache")
    return cache, igguf.convert_gguf(tiny_gguf, dtype=torch.float32, cache_dir=cache)


def test_round_trip_is_exact_and_boots(tiny_llama, tiny_gguf, converted):
    from safetensors.torch import load_file
    from transformers import AutoTokenizer

    cache, out = converted
    assert out.parent == cache and out.name == f"{igguf.file_sha256(tiny_gguf)}-float32"
    assert {p.suffix for p in out.iterdir()} <= {".json", ".safetensors", ".jinja"}
    original, back = load_file(tiny_llama / "model.safetensors"), load_file(out / "model.safetensors")
    for name, t in original.items():  # F32 in GGUF: exact, Q/K permutation undone
        assert torch.equal(back[name], t), name
    a, b = AutoTokenizer.from_pretrained(tiny_llama), AutoTokenizer.from_pretrained(out)
    va, vb = a.get_vocab(), b.get_vocab()
    # transformers' GGUF gpt2-tokenizer builder appends its default "<|endoftext|>" when a file
    # lacks it (this tiny vocabulary does; real byte-level ones have it): ids past the file's.
    assert {t: i for t, i in vb.items() if t in va} == va and set(vb) - set(va) <= {"<|endoftext|>"}
    assert min(vb[t] for t in vb if t not in va) >= len(va) if set(vb) - set(va) else True
    assert a.chat_template == b.chat_template
    text = "The city of Paris is in France. ¿Dónde está?"
    assert a(text).input_ids == b(text).input_ids

    model = interp.load_model(tiny_gguf, device="cpu", gguf_cache_dir=cache)
    src = model.interp_source
    assert src["path"] == str(out) and src["name"] == str(tiny_gguf)
    assert src["gguf"] == {"file": str(tiny_gguf.resolve()), "sha256": igguf.file_sha256(tiny_gguf), "dtype": "float32"}
    ref = interp.load_model(tiny_llama, device="cpu")
    ids = torch.tensor([a(text).input_ids])
    with torch.inference_mode():
        torch.testing.assert_close(model(ids), ref(ids), rtol=0, atol=0)


def test_cache_is_reused_without_reconverting(tiny_gguf, converted, monkeypatch):
    cache, out = converted
    before = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}

    def boom(*a, **k):
        raise AssertionError("converted again")

    monkeypatch.setattr(igguf, "_convert_into", boom)
    monkeypatch.setattr(igguf, "check_gguf", boom)
    assert igguf.convert_gguf(tiny_gguf, dtype=torch.float32, cache_dir=cache) == out
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == before
    # a different dtype is a different conversion
    with pytest.raises(AssertionError, match="converted again"):
        igguf.convert_gguf(tiny_gguf, dtype=torch.bfloat16, cache_dir=cache)


def test_interrupted_conversion_leaves_nothing_trusted(tiny_gguf, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    real = igguf._convert_into

    def interrupted(src, out, dtype):
        real(src, out, dtype)  # every file written ...
        raise KeyboardInterrupt  # ... but the process stops before the rename

    monkeypatch.setattr(igguf, "_convert_into", interrupted)
    with pytest.raises(KeyboardInterrupt):
        igguf.convert_gguf(tiny_gguf, dtype=torch.float32, cache_dir=cache)
    assert list(cache.iterdir()) == []  # the temporary folder is removed, nothing renamed into place

    # a killed process leaves a .tmp-* folder: it is never read, and a later call converts afresh
    stale = cache / f".tmp-{igguf.file_sha256(tiny_gguf)[:12]}-killed"
    stale.mkdir()
    (stale / "config.json").write_text("{}")
    monkeypatch.setattr(igguf, "_convert_into", real)
    out = igguf.convert_gguf(tiny_gguf, dtype=torch.float32, cache_dir=cache)
    assert (out / igguf.MARKER).is_file() and (out / "model.safetensors").is_file()
    assert sorted(p.name for p in cache.iterdir()) == sorted([stale.name, out.name])

    # a folder at the final name without the marker was not written by a complete conversion
    (out / igguf.MARKER).unlink()
    with pytest.raises(ValueError, match="is not a complete GGUF conversion"):
        igguf.convert_gguf(tiny_gguf, dtype=torch.float32, cache_dir=cache)


def test_q8_0_converts_close_to_the_original(tiny_llama, tmp_path):
    from safetensors.torch import load_file

    path = write_tiny_gguf(tiny_llama, tmp_path / "tiny-q8.gguf", qtype="Q8_0")
    assert igguf.gguf_header(path)["tensor_types"] == {"Q8_0": 16, "F32": 5}  # 7 per layer, embedding, lm_head
    out = igguf.convert_gguf(path, dtype=torch.float32, cache_dir=tmp_path / "cache")
    original, back = load_file(tiny_llama / "model.safetensors"), load_file(out / "model.safetensors")
    for name, t in original.items():
        torch.testing.assert_close(back[name], t, rtol=0, atol=float(t.abs().max()) / 100)


def test_unsupported_architecture_is_refused_before_converting(tiny_llama, tmp_path, monkeypatch):
    monkeypatch.setattr(igguf, "_convert_into", lambda *a: pytest.fail("conversion started"))
    path = write_tiny_gguf(tiny_llama, tmp_path / "bert.gguf", arch="bert")
    with pytest.raises(ValueError, match=r"GGUF architecture 'bert' is not supported by transformers' GGUF loader "
                                         r"\(supported: .*llama.*\)"):
        igguf.convert_gguf(path, cache_dir=tmp_path / "cache")
    path = write_tiny_gguf(tiny_llama, tmp_path / "t5.gguf", arch="t5")
    with pytest.raises(ValueError, match="GGUF architecture 't5' loads in transformers as 't5', which "
                                         "TransformerLens' TransformerBridge cannot boot"):
        interp.load_model(path, gguf_cache_dir=tmp_path / "cache")
    assert not (tmp_path / "cache").exists() or list((tmp_path / "cache").iterdir()) == []


def test_unsupported_tensor_type_is_refused_before_converting(tiny_llama, tmp_path, monkeypatch):
    monkeypatch.setattr(igguf, "_convert_into", lambda *a: pytest.fail("conversion started"))
    path = write_tiny_gguf(tiny_llama, tmp_path / "int.gguf", int_embedding=True)
    with pytest.raises(ValueError, match=r"GGUF tensor type\(s\) I32 \(1 tensors\) cannot be dequantised by "
                                         r"transformers' GGUF loader for architecture 'llama'"):
        interp.load_model(path, gguf_cache_dir=tmp_path / "cache")


def test_bad_inputs(tmp_path):
    with pytest.raises(FileNotFoundError, match="GGUF file .* does not exist"):
        interp.load_model(tmp_path / "missing.gguf")
    junk = tmp_path / "junk.gguf"
    junk.write_bytes(b"not a gguf file at all")
    with pytest.raises(ValueError, match="is not a readable GGUF file"):
        igguf.convert_gguf(junk, cache_dir=tmp_path / "cache")
    with pytest.raises(ValueError, match="dtype must be a floating-point torch.dtype"):
        igguf.convert_gguf(junk, dtype=torch.int8, cache_dir=tmp_path / "cache")


def test_default_cache_dir_honours_interp_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("INTERP_CACHE", str(tmp_path))
    assert igguf.default_cache_dir() == tmp_path / "gguf"
    monkeypatch.delenv("INTERP_CACHE")
    assert igguf.default_cache_dir() == Path(os.path.expanduser("~")) / ".cache" / "interp" / "gguf"
