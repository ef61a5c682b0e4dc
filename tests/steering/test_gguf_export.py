"""llama.cpp control vectors: export, the GGUF reader's view of the file, import (ours, repeng's and
cvector-generator's layouts), the refusals, and the model identity that saved vectors record."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from gguf import GGUFReader, GGUFWriter
from safetensors import safe_open

import interp
import steering
from steering import SteeringVector, load_vector
from steering.gguf import direction_index, export_gguf, load_gguf
from steering.vector import weights_sha256


@pytest.fixture(scope="module")
def pair():
    return interp.load_pair()  # the bundled organism: llama, 6 layers, d_model 128


def _vec(layers=(1, 3, 5), d=16, site="resid_post", scale=1.0, meta=None, seed=0):
    g = torch.Generator().manual_seed(seed)
    return SteeringVector(torch.randn(len(layers), d, generator=g), tuple(layers), site, scale, meta or {})


def _fields(path) -> dict:
    reader = GGUFReader(str(path))
    return {k: f.contents() for k, f in reader.fields.items() if not k.startswith("GGUF.")}


def _tensors(path) -> dict:
    reader = GGUFReader(str(path))
    return {t.name: (t.tensor_type.name, [int(x) for x in t.shape], np.array(t.data)) for t in reader.tensors}


def _write_gguf(path, arch, tensors, kv=None):
    """A GGUF file written the way repeng and cvector-generator write theirs (or wrongly, for the refusals)."""
    w = GGUFWriter(str(path), arch)
    for key, (kind, value) in (kv or {}).items():
        getattr(w, f"add_{kind}")(key, value)
    for name, data in tensors.items():
        w.add_tensor(name, data)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def _fake_model_gguf(path, arch="llama", n_layers=4, d_model=16):
    """The header of a llama.cpp model file (no weights): what export reads of a --model .gguf."""
    return _write_gguf(path, arch, {"token_embd.weight": np.zeros((2, d_model), np.float32)},
                       {f"{arch}.block_count": ("uint32", n_layers), f"{arch}.embedding_length": ("uint32", d_model)})


# ---------------------------------------------------------------------------------------------- export


def test_export_reads_back_with_the_same_numbers_names_and_dtype(tmp_path):
    v = _vec(scale=2.5, meta={"concept": "x", "method": "mean_difference"})
    path = v.export_gguf(tmp_path / "v.gguf", model_hint="llama")
    fields = _fields(path)
    assert fields["general.architecture"] == "controlvector"
    assert fields["controlvector.model_hint"] == "llama" and fields["controlvector.layer_count"] == 3
    assert fields["interp.scale"] == 2.5 and fields["interp.site"] == "resid_post"
    assert fields["interp.layers"] == [1, 3, 5] and json.loads(fields["interp.meta"])["concept"] == "x"
    assert "toward the positive set" in fields["interp.sign"] and json.loads(fields["interp.positions"]) == "all"
    tensors = _tensors(path)
    assert sorted(tensors) == ["direction.1", "direction.3", "direction.5"]
    for i, layer in enumerate(v.layers):
        kind, shape, data = tensors[f"direction.{layer}"]
        assert kind == "F32" and shape == [16] and data.dtype == np.float32
        assert np.array_equal(data, (v.vectors[i] * 2.5).numpy())  # the scale is baked in, bit for bit


def test_load_back_equals_the_original_at_resid_post(tmp_path):
    v = _vec(meta={"concept": "x"})
    w = load_vector(v.export_gguf(tmp_path / "v.gguf", model_hint="llama"))
    assert w.site == "resid_post" and w.layers == v.layers and w.scale == 1.0
    assert torch.equal(w.vectors, v.vectors) and w.meta["concept"] == "x" and w.meta["baked_scale"] == 1.0
    scaled = load_gguf(_vec(scale=-3.0).export_gguf(tmp_path / "s", model_hint="llama"))  # suffix added
    assert (tmp_path / "s.gguf").is_file() and torch.equal(scaled.vectors, _vec().vectors * -3.0)
    assert scaled.meta["baked_scale"] == -3.0 and scaled.sign.startswith("reversed by the baked scale -3")


def test_resid_pre_of_block_k_is_direction_k_minus_1(tmp_path):
    v = _vec(layers=(2, 4), site="resid_pre")
    path = v.export_gguf(tmp_path / "pre.gguf", model_hint="llama")
    assert sorted(_tensors(path)) == ["direction.1", "direction.3"]
    w = load_vector(path)
    assert w.site == "resid_post" and w.layers == (1, 3) and torch.equal(w.vectors, v.vectors)
    assert w.meta["exported_from"] == {"site": "resid_pre", "layers": [2, 4]}
    assert direction_index("resid_post", 7) == 7 and direction_index("resid_pre", 7) == 6


@pytest.mark.parametrize("site, layers, match", [
    ("resid_post", (0, 2), r"resid_post of block 0 cannot be expressed: it would be direction\.0.*drop it with "
                           r"vector\.select\(\[2\]\)"),
    ("resid_pre", (0,), "resid_pre of block 0 .* cannot be expressed.*none of the vector's layers can be exported"),
    ("resid_pre", (1, 3), r"resid_pre of block 1 \(= resid_post of block 0\) cannot be expressed"),
    ("mlp_out", (0, 2), r"mlp_out of block 0 cannot be expressed: it would be direction\.0"),
    ("mlp_post", (2,), r"mlp_post of block k is what llama.cpp adds .* after multiplying by the block's W_out.*no "
                       r"model is given to tell: pass the booted model as model="),
    ("attn_out", (2,), "site 'attn_out' cannot be .*passes through the block's MLP .*supported sites: resid_post, "
                       "resid_pre, mlp_out"),
    ("resid_mid", (2,), "site 'resid_mid' cannot be .*passes through the block's MLP"),
    ("mlp_pre", (2,), "site 'mlp_pre' cannot be .*passes through its nonlinearity"),
])
def test_sites_and_layers_llama_cpp_cannot_express_are_refused(tmp_path, site, layers, match):
    with pytest.raises(ValueError, match=match):
        _vec(layers=layers, site=site).export_gguf(tmp_path / "x.gguf", model_hint="llama")
    assert not list(tmp_path.iterdir())  # nothing written, not even a temporary file


def test_export_needs_an_architecture_and_checks_the_hint(tmp_path, pair):
    with pytest.raises(ValueError, match="no architecture for controlvector.model_hint.*pass model="):
        _vec().export_gguf(tmp_path / "x.gguf")
    with pytest.raises(ValueError, match="model_hint 'gemma3' names another architecture than the model's 'llama'"):
        _vec(d=128).export_gguf(tmp_path / "x.gguf", model=pair.post, model_hint="gemma3")
    # the hint must be one of llama.cpp's names (the gguf package's MODEL_ARCH_NAMES)
    with pytest.raises(ValueError, match="model_hint 'lama' is not an architecture name of llama.cpp .*nearest: llama"):
        _vec().export_gguf(tmp_path / "x.gguf", model_hint="lama")
    with pytest.raises(ValueError, match="model_hint 'gemma3_text' is a Hugging Face model_type; llama.cpp calls that "
                                         "architecture 'gemma3'"):
        _vec().export_gguf(tmp_path / "x.gguf", model_hint="gemma3_text")
    assert not list(tmp_path.iterdir())


def test_a_scale_of_zero_is_exported_with_a_warning(tmp_path):
    with pytest.warns(UserWarning, match="scale is 0, so every direction written is zero: llama.cpp adds nothing"):
        path = _vec(scale=0.0).export_gguf(tmp_path / "zero.gguf", model_hint="llama")
    assert all(not data.any() for _, _, data in _tensors(path).values())


@pytest.mark.parametrize("site", ["mlp_out", "mlp_post"])
def test_mlp_out_and_mlp_post_export_as_exactly_what_add_does_there(tmp_path, pair, site):
    """On the organism (Llama blocks: the MLP output is added straight into the residual stream), Add at mlp_out of
    block k equals Add at resid_post of block k, and an mlp_post feature f equals f @ W_out there."""
    model = pair.post
    width = int(model.cfg.d_mlp if site == "mlp_post" else model.cfg.d_model)
    v = _vec(layers=(2, 4), d=width, site=site, scale=3.0)
    path = v.export_gguf(tmp_path / "v.gguf", model=model)
    fields = _fields(path)
    assert fields["interp.site"] == site and fields["interp.layers"] == [2, 4]
    assert fields["interp.conversion"].startswith(site) and sorted(_tensors(path)) == ["direction.2", "direction.4"]
    served = load_vector(path, model=model)
    assert served.site == "resid_post" and served.layers == (2, 4) and served.meta["conversion"].startswith(site)
    if site == "mlp_post":
        want = v.at(4).double() @ model.blocks[4].mlp.W_out.detach().double() * 3.0
        assert torch.allclose(served.at(4).double(), want, atol=1e-5)
    tokens = model.to_tokens(["The city of Paris is in France.", "How can I plant a tree?"])
    with torch.no_grad():
        plain = model(tokens)
        with steering.apply(model, steering.Add(v)):
            at_site = model(tokens)
        with steering.apply(model, steering.Add(served)):
            exported = model(tokens)
    assert (at_site - plain).abs().max() > 1.0  # the vector moves the logits ...
    assert (at_site - exported).abs().max() < 1e-4  # ... and the exported rows move them the same way
    if site == "mlp_post":
        with pytest.raises(ValueError, match="mlp_post of block k .*pass the booted model as model="):
            v.export_gguf(tmp_path / "w.gguf", model_hint="llama")
        with pytest.raises(ValueError, match="the header of .*model.gguf does not tell, nor hold W_out"):
            v.export_gguf(tmp_path / "w.gguf", model=_fake_model_gguf(tmp_path / "model.gguf", n_layers=6, d_model=128))
    else:  # mlp_out is the tensor the block adds: no model needed
        assert load_vector(v.export_gguf(tmp_path / "w.gguf", model_hint="llama")).layers == (2, 4)


def _tiny_gemma3(path):
    """A random-weight Gemma 3 text model (post-feedforward norms) with the tiny Gemma tokenizer."""
    import transformers

    from interp.testing import build_tokenizer

    tok = build_tokenizer("gemma2")
    cfg = transformers.Gemma3TextConfig(
        vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=3, num_attention_heads=4,
        num_key_value_heads=2, head_dim=16, query_pre_attn_scalar=16, sliding_window=32, max_position_embeddings=64,
        initializer_range=0.1, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        transformers.Gemma3ForCausalLM(cfg).eval().save_pretrained(path)
    tok.save_pretrained(path)
    return interp.load_model(path, device="cpu")


def test_mlp_post_is_refused_where_a_post_feedforward_norm_rescales_it(tmp_path, tiny_pairs):
    """Gemma 2/3 normalise the MLP output before the residual add: f @ W_out at the block's output is not what an
    mlp_post feature adds (refused), while mlp_out, which TransformerLens reads after that norm, still is exact."""
    gemma3 = _tiny_gemma3(tmp_path / "gemma3")
    for model in (gemma3, tiny_pairs["gemma2"].post):
        d, d_mlp = int(model.cfg.d_model), int(model.cfg.d_mlp)
        with pytest.raises(ValueError, match=r"mlp_post of block\(s\) \[1, 2\] cannot be exported for this model: "
                                             r"its blocks normalise the MLP output .*post-feedforward norm"):
            _vec(layers=(1, 2), d=d_mlp, site="mlp_post").export_gguf(tmp_path / "x.gguf", model=model)
        assert not (tmp_path / "x.gguf").exists()
    model = gemma3
    feature = _vec(layers=(1,), d=int(model.cfg.d_mlp), site="mlp_post", scale=3.0)
    out = _vec(layers=(1,), d=int(model.cfg.d_model), site="mlp_out", scale=3.0)
    tokens = model.to_tokens(["The city of Paris is in France."])
    as_post = {name: SteeringVector(v.vectors @ model.blocks[1].mlp.W_out.detach() if name == "feature"
                                    else v.vectors, v.layers, "resid_post", 3.0)
               for name, v in (("feature", feature), ("out", out))}
    with torch.no_grad():
        effect = {}
        for name, v in (("feature", feature), ("out", out)):
            with steering.apply(model, steering.Add(v)):
                at_site = model(tokens)
            with steering.apply(model, steering.Add(as_post[name])):
                effect[name] = float((at_site - model(tokens)).abs().max())
    assert effect["feature"] > 0.1 and effect["out"] < 1e-4  # why the one is refused and the other is not
    path = out.export_gguf(tmp_path / "out.gguf", model=model)
    assert _fields(path)["controlvector.model_hint"] == "gemma3" and sorted(_tensors(path)) == ["direction.1"]


def test_a_non_finite_direction_is_refused_naming_the_file_and_the_tensor(tmp_path):
    row = np.ones(16, np.float32)
    row[3] = np.nan
    path = _write_gguf(tmp_path / "nan.gguf", "controlvector", {"direction.1": np.ones(16, np.float32),
                                                              "direction.2": row})
    with pytest.raises(ValueError, match=r"nan\.gguf: tensor direction\.2 holds NaN or inf in 1 of its 16 entries"):
        load_vector(path)


def test_positions_other_than_all_are_exported_with_a_warning(tmp_path):
    v = _vec(meta={"applied_positions": "last"})
    assert v.applied_positions == "last" and _vec().applied_positions == "all"
    with pytest.warns(UserWarning, match="meant to be added at positions 'last'.*llama.cpp adds a control vector at "
                                         "every position"):
        path = v.export_gguf(tmp_path / "v.gguf", model_hint="llama")
    assert json.loads(_fields(path)["interp.positions"]) == "last"


def test_export_against_a_booted_model(tmp_path, pair, tiny_pairs, family):
    model = tiny_pairs[family].post
    d, n = int(model.cfg.d_model), int(model.cfg.n_layers)
    path = _vec(layers=(1, n - 1), d=d).export_gguf(tmp_path / "v.gguf", model=model)
    names = {"gpt2": "gpt2", "llama": "llama", "qwen2": "qwen2", "gemma2": "gemma2"}
    fields = _fields(path)
    assert fields["controlvector.model_hint"] == names[family] and fields["interp.n_layers"] == n
    with pytest.raises(ValueError, match=f"the vector has width {d + 1} but the model's resid_post has width {d}"):
        _vec(layers=(1,), d=d + 1).export_gguf(tmp_path / "w.gguf", model=model)
    with pytest.raises(ValueError, match=f"the vector has layer\\(s\\) \\[{n}\\] but the model has {n} blocks"):
        _vec(layers=(1, n), d=d).export_gguf(tmp_path / "w.gguf", model=model)


def test_export_against_a_gguf_model_file_reads_its_header(tmp_path):
    model = _fake_model_gguf(tmp_path / "model.gguf", arch="qwen2", n_layers=4, d_model=16)
    path = _vec(layers=(1, 3)).export_gguf(tmp_path / "v.gguf", model=model)
    assert _fields(path)["controlvector.model_hint"] == "qwen2" and _fields(path)["interp.n_layers"] == 4
    with pytest.raises(ValueError, match=r"does not fit .*layer\(s\) \[5\] but the model has 4 blocks"):
        _vec(layers=(1, 5)).export_gguf(tmp_path / "w.gguf", model=model)
    with pytest.raises(ValueError, match="width 8 but the model's d_model is 16"):
        _vec(layers=(1,), d=8).export_gguf(tmp_path / "w.gguf", model=model)
    with pytest.raises(ValueError, match="is a control vector, not a model"):
        _vec(layers=(1,)).export_gguf(tmp_path / "w.gguf", model=path)


# ---------------------------------------------------------------------------------------------- import


def test_a_repeng_file_loads_at_the_blocks_it_steers(tmp_path):
    # repeng: direction.<layer id into model.layers>, added to that block's output; hint = HF model_type, uint32 count
    rows = {k: np.random.default_rng(k).standard_normal(16).astype(np.float32) for k in (5, 4, 3, 2, 1)}
    path = _write_gguf(tmp_path / "repeng.gguf", "controlvector", {f"direction.{k}": r for k, r in rows.items()},
                       {"controlvector.model_hint": ("string", "gemma3_text"),
                        "controlvector.layer_count": ("uint32", 5)})
    v = load_vector(path)
    assert v.site == "resid_post" and v.layers == (1, 2, 3, 4, 5) and v.scale == 1.0
    assert all(np.array_equal(v.at(k).numpy(), rows[k]) for k in rows)
    assert v.meta["model_hint"] == "gemma3_text" and v.meta["layer_count"] == 5 and "as stored" in v.sign
    with pytest.warns(UserWarning, match=r"direction\.0 .* which llama.cpp refuses"):
        zero = load_vector(_write_gguf(tmp_path / "zero.gguf", "controlvector", {"direction.0": rows[1]}))
    assert zero.layers == (0,)


def test_a_cvector_generator_file_loads(tmp_path, pair):
    # llama.cpp's cvector-generator: direction.1 .. direction.<n_layer - 1>, hint = general.architecture, int32 count
    n, d = int(pair.post.cfg.n_layers), int(pair.post.cfg.d_model)
    rows = {k: np.full(d, k, np.float32) for k in range(1, n)}
    path = _write_gguf(tmp_path / "cvec.gguf", "controlvector", {f"direction.{k}": r for k, r in rows.items()},
                       {"controlvector.model_hint": ("string", "llama"), "controlvector.layer_count": ("int32", n - 1)})
    v = load_vector(path, model=pair.post)
    assert v.layers == tuple(range(1, n)) and torch.equal(v.at(3), torch.full((d,), 3.0))


@pytest.mark.parametrize("arch, tensors, match", [
    ("controlvector", {"direction.1": np.zeros(16, np.float16)}, "tensor direction.1 is F16, not F32; llama.cpp "
                                                                 "refuses it too"),
    ("controlvector", {"direction.1": np.zeros(16, np.float32), "bias.1": np.zeros(16, np.float32)},
     r"tensor 'bias.1' is not a direction: a control vector holds only tensors named direction.<k>"),
    ("controlvector", {"direction.01": np.zeros(16, np.float32)}, "tensor 'direction.01' is not a direction"),
    ("controlvector", {"direction.x": np.zeros(16, np.float32)}, "tensor 'direction.x' is not a direction"),
    ("llama", {"direction.1": np.zeros(16, np.float32)}, "not a llama.cpp control vector: it has "
                                                         "general.architecture 'llama', not 'controlvector'"),
    ("controlvector", {"direction.1": np.zeros(16, np.float32), "direction.2": np.zeros(8, np.float32)},
     r"different lengths \[8, 16\]"),
    ("controlvector", {"direction.1": np.zeros((2, 8), np.float32)}, r"shape \[8, 2\]; a direction is 1-D"),
    ("controlvector", {}, "holds no direction tensors"),
])
def test_bad_control_vector_files_are_refused(tmp_path, arch, tensors, match):
    path = _write_gguf(tmp_path / "bad.gguf", arch, tensors)
    with pytest.raises(ValueError, match=match):
        load_vector(path)


def test_files_that_are_not_gguf_or_missing_are_refused(tmp_path):
    (tmp_path / "text.gguf").write_text("not a gguf file")
    with pytest.raises(ValueError, match="is not a readable GGUF file"):
        load_vector(tmp_path / "text.gguf")
    with pytest.raises(FileNotFoundError, match="no control vector file"):
        load_vector(tmp_path / "missing.gguf")


def test_import_checks_the_model(tmp_path, pair):
    d = int(pair.post.cfg.d_model)
    ok = _write_gguf(tmp_path / "ok.gguf", "controlvector", {"direction.2": np.ones(d, np.float32)},
                     {"controlvector.model_hint": ("string", "llama")})
    assert load_vector(ok, model=pair.post).layers == (2,)
    short = _write_gguf(tmp_path / "short.gguf", "controlvector", {"direction.2": np.ones(d - 1, np.float32)})
    with pytest.raises(ValueError, match=f"width {d - 1} but the model's resid_post has width {d}"):
        load_vector(short, model=pair.post)
    deep = _write_gguf(tmp_path / "deep.gguf", "controlvector", {"direction.9": np.ones(d, np.float32)})
    with pytest.raises(ValueError, match=r"layer\(s\) \[9\] but the model has 6 blocks"):
        load_vector(deep, model=pair.post)
    other = _write_gguf(tmp_path / "other.gguf", "controlvector", {"direction.2": np.ones(d, np.float32)},
                        {"controlvector.model_hint": ("string", "qwen2")})
    with pytest.raises(ValueError, match="made for a 'qwen2' model .*not this 'llama' one"):
        load_vector(other, model=pair.post)
    mistral = _write_gguf(tmp_path / "mistral.gguf", "controlvector", {"direction.2": np.ones(d, np.float32)},
                          {"controlvector.model_hint": ("string", "mistral")})  # repeng's spelling of llama.cpp's llama
    assert load_vector(mistral, model=pair.post).layers == (2,)


# ---------------------------------------------------------------------------------------------- model identity


def test_a_vector_made_for_one_model_is_refused_with_another(tmp_path, pair):
    v = SteeringVector.from_prompts(pair.post, ["yes sure", "of course"], ["no way", "never"], layers=[2, 4])
    ident = v.meta["model_identity"]
    assert ident["architecture"] == "llama" and ident["n_layers"] == 6 and ident["d_model"] == 128
    assert ident["weights_sha256"] == weights_sha256(pair.post) != weights_sha256(pair.base)
    path = v.save(tmp_path / "v.safetensors")
    with safe_open(str(path), "pt") as f:
        header = json.loads(f.metadata()["interp"])
    assert header["model"] == ident and header["positions"] == "all" and header["layer_convention"].startswith("block")
    assert "toward the positive set" in header["sign"]
    assert load_vector(path, model=pair.post).meta == v.meta
    with pytest.raises(ValueError, match=r"was made for another model .*weights sha256 [0-9a-f]{12}\.\.\. recorded"):
        load_vector(path, model=pair.base)  # same architecture and shapes, other weights
    gguf_path = v.export_gguf(tmp_path / "v.gguf")  # the recorded model names the architecture
    assert _fields(gguf_path)["controlvector.model_hint"] == "llama"
    with pytest.raises(ValueError, match="was made for another model"):
        load_vector(gguf_path, model=pair.base)  # the identity travels through the GGUF file
    with pytest.raises(ValueError, match="was made for another model"):
        v.export_gguf(tmp_path / "w.gguf", model=pair.base)


def test_save_with_a_model_records_it_and_old_files_still_load(tmp_path, pair):
    v = _vec(layers=(1,), d=128)
    assert "model_identity" not in v.meta
    path = v.save(tmp_path / "v", model=pair.post)
    assert load_vector(path).meta["model_identity"]["name"].endswith("post")
    with pytest.raises(ValueError, match="the vector has width 16"):
        _vec(layers=(1,)).save(tmp_path / "w", model=pair.post)
    model_file = _fake_model_gguf(tmp_path / "model.gguf", n_layers=6, d_model=16)
    bound = _vec(layers=(1, 5)).with_model(model_file)  # a .gguf model file: its header and its sha256
    assert bound.meta["model_identity"]["n_layers"] == 6 and len(bound.meta["model_identity"]["gguf_sha256"]) == 64
    with pytest.raises(ValueError, match=r"layer\(s\) \[7\] but the model has 6 blocks"):
        _vec(layers=(1, 7)).with_model(model_file)
    from interp._io import save_safetensors

    old = {"format": "interp.steering_vector/1", "site": "resid_pre", "scale": 2.0, "layers": [3], "meta": {"a": 1}}
    save_safetensors(tmp_path / "old.safetensors", {"vectors": torch.ones(1, 128), "layers": torch.tensor([3])},
                     metadata={"interp": json.dumps(old)})
    w = load_vector(tmp_path / "old.safetensors", model=pair.post)  # no identity recorded: only the fit is checked
    assert w.layers == (3,) and w.scale == 2.0 and w.meta == {"a": 1} and w.applied_positions == "all"


def test_export_records_the_model_it_was_given_and_load_checks_it(tmp_path, pair):
    """A vector that records no model, exported for one: the GGUF file records that model (interp.model, and the
    meta's model_identity), and loading it with another model is refused as load_vector refuses a safetensors one."""
    v = _vec(layers=(1, 3), d=128)
    assert "model_identity" not in v.meta
    path = v.export_gguf(tmp_path / "v.gguf", model=pair.post)
    recorded = json.loads(_fields(path)["interp.model"])
    assert recorded["weights_sha256"] == weights_sha256(pair.post) and recorded["architecture"] == "llama"
    assert json.loads(_fields(path)["interp.meta"])["model_identity"] == recorded
    assert load_gguf(path, model=pair.post).meta["model_identity"] == recorded
    with pytest.raises(ValueError, match=r"was made for another model .*weights sha256 [0-9a-f]{12}\.\.\. recorded"):
        load_gguf(path, model=pair.base)
    with pytest.raises(ValueError, match="was made for another model"):
        load_vector(path, model=pair.base)


def test_a_hash_on_one_side_only_is_said_in_a_warning(tmp_path, pair):
    """A vector made on a booted model (a weights hash) checked against a .gguf model file (a file hash): nothing
    can compare the weights, and a warning says that only the shapes and architecture were."""
    bound = _vec(layers=(1, 3), d=128).with_model(pair.post)
    model_file = _fake_model_gguf(tmp_path / "model.gguf", arch="llama", n_layers=6, d_model=128)
    with pytest.warns(UserWarning, match="cannot be checked by its weights: the vector records a weights sha256 and "
                                         "the model given has a GGUF file sha256.*only the layer count, width and "
                                         "architecture were compared"):
        path = bound.export_gguf(tmp_path / "v.gguf", model=model_file)
    assert json.loads(_fields(path)["interp.model"])["gguf_sha256"]  # the file records the model it was exported for
    with pytest.warns(UserWarning, match="cannot be checked by its weights"):
        load_vector(bound.save(tmp_path / "v.safetensors"), model=model_file)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # both sides hashed alike: no warning
        load_vector(tmp_path / "v.safetensors", model=pair.post)


def test_the_weight_hash_follows_the_weights_and_not_float32_vs_bfloat16():
    import copy

    from steering.vector import compare_identity

    lin = torch.nn.Linear(8, 4)
    before = weights_sha256(lin)
    assert weights_sha256(copy.deepcopy(lin).to(torch.bfloat16)) == before  # the same checkpoint in bfloat16
    assert weights_sha256(copy.deepcopy(lin).to(torch.float16)) != before  # rounds differently: not compared
    with torch.no_grad():
        lin.weight[0, 0] += 1.0  # in place: the memo must not return the stale hash
    assert weights_sha256(lin) != before
    a = {"weights_sha256": "a" * 64, "weights_dtype": "float32"}
    assert compare_identity(a, {"weights_sha256": "b" * 64, "weights_dtype": "bfloat16"}) != []
    with pytest.warns(UserWarning, match="float32 weights and the model holds float16 ones"):
        assert compare_identity(a, {"weights_sha256": "b" * 64, "weights_dtype": "float16"}) == []
    assert compare_identity({"n_layers": 6, "architecture": "llama"}, {"n_layers": 7, "architecture": "qwen2"}) == [
        "layers 6 recorded, 7 given", "architecture 'llama' recorded, 'qwen2' given"]


def test_steering_exports():
    assert steering.gguf.export_gguf is export_gguf and steering.model_identity is steering.vector.model_identity
