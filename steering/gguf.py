"""llama.cpp control vectors: export a :class:`~steering.SteeringVector` as GGUF, and read one back.

A control vector file is a GGUF file with ``general.architecture = "controlvector"``,
``controlvector.model_hint`` (the model's architecture as llama.cpp spells it) and
``controlvector.layer_count``, and one 1-D F32 tensor ``direction.<k>`` of length
``n_embd`` per layer.

What llama.cpp does with ``direction.<k>``
------------------------------------------
Read in the llama.cpp vendored by llama-cpp-python 0.3.36:

* ``common/common.cpp``, ``common_control_vector_load_one``: every tensor must be
  named ``direction.<k>`` with ``k > 0`` ("invalid (zero) direction tensor layer
  index" for ``k = 0``), be F32 ("invalid (non-F32) direction tensor type") and
  1-D, all of one length; tensor ``k`` is multiplied by the file's strength and
  stored at offset ``n_embd * (k - 1)`` ("layer 1 at [0]"). Directions of the same
  layer, in one file or several, are summed. ``common_init_from_params`` applies
  them over the layer range ``--control-vector-layer-range START END``
  (inclusive; default ``1`` to ``n_layer``).
* ``src/llama-adapter.cpp``, ``llama_adapter_cvec::init`` / ``::apply``: one tensor
  per layer ``il = 1 .. n_layer - 1`` ("there's never a tensor for layer 0");
  ``llama_adapter_cvec::apply_to`` adds ``tensors[il]`` to the hidden state when
  ``START <= il <= END``.
* ``src/llama-graph.cpp``, ``llm_graph_context::build_cvec``, is called by each
  architecture's graph after the block's last residual add, e.g.
  ``src/models/llama.cpp`` (``cur = ggml_add(ctx0, cur, ffn_inp); cur = build_cvec(cur,
  il); cb(cur, "l_out", il)``) and ``src/models/gemma3.cpp`` (after
  ``ffn_post_norm`` and the residual add), with ``il`` the 0-based block index.

So ``direction.<k>`` is added to the **output of block k** (0-based), our
``resid_post`` of block ``k``, at every position (prompt and generated tokens
alike), for ``k = 1 .. n_layers - 1``. Block 0's output cannot be steered.
Our sites map as: ``resid_post`` of block ``k`` -> ``direction.<k>``; ``resid_pre`` of
block ``k`` (= ``resid_post`` of block ``k - 1``) -> ``direction.<k-1>``. Refused:
``resid_post`` of block 0 and ``resid_pre`` of blocks 0 and 1 (the input of block 0
is the embedding, and block 0's output is llama.cpp's unused index 0).

The other sites are inside a block, and llama.cpp adds only at its output:

* ``mlp_out`` of block ``k`` -> ``direction.<k>``, on every model: the toolkit's ``mlp_out`` is TransformerLens'
  ``hook_mlp_out``, which the bridge places on the tensor the block adds to the residual stream (after Gemma 2/3's
  post-feedforward norm: ``BlockBridge`` points it at ``ln2_post.hook_out``), so adding ``v`` there adds ``v`` to
  the block's output. Measured: ``Add`` at ``mlp_out`` and at ``resid_post`` of the same block agree within
  2.4e-6 on the bundled organism (Llama blocks) and 7e-7 on a tiny Gemma 3.
* ``mlp_post`` (the input of the MLP's out-projection) -> ``direction.<k>`` = ``f @ W_out`` of block ``k``,
  given the booted model and only where the block adds ``W_out``'s product straight into the residual stream
  (the bias is added either way): on the organism within 1e-5 of ``Add`` at ``mlp_post``. Refused where a
  post-feedforward norm (Gemma 2/3, ``blocks.k.ln2_post``) rescales the MLP output per token, so that no fixed
  vector at the block's output adds the same; where the block scales its MLP output before the add (Granite's
  residual multiplier); where the MLP has no single ``W_out`` (a mixture of experts); and without a booted model,
  which is what tells (a ``.gguf`` model file's header does not).
* ``resid_mid``, ``attn_out`` and ``mlp_pre`` are refused: what is added there passes through the block's MLP
  (its input norm and nonlinearity) before it reaches the block's output.

Scale and positions
-------------------
:func:`export_gguf` bakes the vector's ``scale`` into the tensors (and records it
as ``interp.scale``), so ``llama-cli -m model.gguf --control-vector v.gguf`` adds
what ``steering.add(model, v)`` adds. ``--control-vector-scaled v.gguf:S``
(``FNAME:SCALE`` in this llama.cpp; older releases took ``FNAME SCALE``) multiplies
the baked tensors by ``S`` again: ``S = 1`` is the toolkit's default.
llama.cpp adds at every position; a vector whose ``meta["applied_positions"]``
says it was meant for some positions only (``"last"``, ``"generated"``, ...) is
exported with a warning (the direction is the same; where it is added is not)
and the policy is recorded as ``interp.positions``. A scale of 0 writes zero
directions (llama.cpp then adds nothing), with a warning.

The model
---------
The file records the model it is for as ``interp.model`` (JSON, :func:`steering.vector.model_identity`): the
model given to :func:`export_gguf`, else the one the vector records (``meta["model_identity"]``). It is also
the ``model_identity`` of ``interp.meta``, so :func:`load_gguf` given another model refuses the file as
:func:`steering.load_vector` refuses a safetensors vector.

Files written by others (:func:`load_gguf`)
--------------------------------------------
* repeng (``ControlVector.export_gguf``): ``direction.<k>`` for its layer ids, which
  index ``model.model.layers`` (0-based); its ``ControlModule`` adds the direction
  to that block's output, the same convention as llama.cpp. Its default layers are
  ``n_layers - 1`` down to ``1`` (``range(-1, -n_layers, -1)``), but a chosen layer 0
  gives ``direction.0``, which llama.cpp refuses (read here, with a warning).
  ``model_hint`` is the Hugging Face ``config.model_type`` (``"llama"``,
  ``"gemma3_text"``), ``layer_count`` (uint32) the number of directions; each is read
  from ``hidden_states[k + 1]``, the output of block ``k``.
* llama.cpp's ``cvector-generator`` (``tools/cvector-generator``): reads the block
  outputs ``l_out-<il>`` for ``il = 0 .. n_layer - 2`` and names the one read at
  block ``il`` ``direction.<il+1>`` (``mean.hpp``/``pca.hpp``: ``"direction.%zu", il+1``):
  each direction is *measured* at the output of block ``k - 1`` (the input of block
  ``k``) and *added* by llama.cpp at the output of block ``k``. ``model_hint`` is the
  model's ``general.architecture``, ``layer_count`` (int32) ``n_layer - 1``. Its PCA
  sign is arbitrary ("the output vector is randomly inverted", ``pca.hpp``).

The two cannot be told apart from the file, so both load the way llama.cpp applies
them: ``direction.<k>`` -> site ``resid_post``, block ``k``. Files this module wrote
(``interp.format``) load with their metadata back: the scale stays baked in
(``scale`` 1.0, ``meta["baked_scale"]``) and the layers are those of ``resid_post``.

Other readers: EasySteer (ZJU-REAL's vLLM fork, ``vllm/steer_vectors``) reads the same files
(``algorithms/loading.py``, ``read_gguf_directions``: every tensor named ``direction.<k>``) and its ``direct``
algorithm adds ``direction.<k>`` times the request's scale to the output of decoder layer ``k`` (a forward
hook on ``model.layers.<k>``), the same convention; unlike llama.cpp it also applies ``direction.0``.
(Read in the source of ``ZJU-REAL/EasySteer-vllm-v1``: ``algorithms/direct.py``, ``layers.py``, ``models.py``;
not run here.)
"""

from __future__ import annotations

import difflib
import json
import os
import re
import tempfile
import warnings
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from .vector import SteeringVector, check_model, model_identity

__all__ = ["CONTROL_VECTOR_ARCH", "CONVERTED_SITES", "SUPPORTED_SITES", "as_block_outputs", "check_model_hint",
           "direction_index", "export_gguf", "gguf_model_identity", "hint_architecture", "load_gguf",
           "llama_cpp_architecture", "post_feedforward_norm"]

#: ``general.architecture`` of a control vector file.
CONTROL_VECTOR_ARCH = "controlvector"
#: Sites a control vector expresses on any model (``mlp_out`` of block k is added to block k's output).
SUPPORTED_SITES = ("resid_post", "resid_pre", "mlp_out")
#: Sites converted to the block's output given the booted model, where that is exact (module docstring).
CONVERTED_SITES = ("mlp_post",)
#: ``interp.format`` of the files :func:`export_gguf` writes.
_FORMAT = "interp.control_vector/1"
_LAYER_CONVENTION = ("llama.cpp: direction.k is added to the output of block k (0-based), i.e. resid_post of "
                     "block k, at every position")
_DIRECTION = re.compile(r"direction\.(0|[1-9][0-9]*)")

#: Hugging Face model class -> llama.cpp architecture (``convert_hf_to_gguf.py``'s ``ModelBase.register``
#: entries and their ``model_arch``, in the llama.cpp of llama-cpp-python 0.3.36).
_HF_CLASS = {
    "LlamaForCausalLM": "llama", "MistralForCausalLM": "llama", "MixtralForCausalLM": "llama",
    "Qwen2ForCausalLM": "qwen2", "Qwen3ForCausalLM": "qwen3", "GemmaForCausalLM": "gemma",
    "Gemma2ForCausalLM": "gemma2", "Gemma3ForCausalLM": "gemma3", "Gemma3ForConditionalGeneration": "gemma3",
    "GPT2LMHeadModel": "gpt2", "Phi3ForCausalLM": "phi3", "GPTNeoXForCausalLM": "gptneox",
    "OlmoForCausalLM": "olmo", "Olmo2ForCausalLM": "olmo2",
}
#: Hugging Face ``config.model_type`` (what repeng writes as ``model_hint``) -> llama.cpp architecture.
_MODEL_TYPE = {
    "llama": "llama", "mistral": "llama", "mixtral": "llama", "qwen2": "qwen2", "qwen3": "qwen3",
    "gemma": "gemma", "gemma2": "gemma2", "gemma3": "gemma3", "gemma3_text": "gemma3", "gpt2": "gpt2",
    "phi3": "phi3", "gpt_neox": "gptneox", "olmo": "olmo", "olmo2": "olmo2",
}


# ---------------------------------------------------------------------------------------------- naming


def _llama_cpp_names() -> set[str]:
    from gguf import MODEL_ARCH_NAMES

    return set(MODEL_ARCH_NAMES.values())


def hint_architecture(hint: str) -> str:
    """A ``model_hint`` in llama.cpp's spelling: repeng's Hugging Face ``model_type`` (``"gemma3_text"``,
    ``"mistral"``) becomes llama.cpp's (``"gemma3"``, ``"llama"``); anything else is returned as it is."""
    return _MODEL_TYPE.get(hint, hint)


def check_model_hint(hint, flag: str = "model_hint") -> str:
    """``hint`` if it is an architecture name llama.cpp knows (the values of the ``gguf`` package's
    ``MODEL_ARCH_NAMES``, e.g. ``"llama"``, ``"gemma3"``).

    Raises:
        ValueError: an empty hint, or another name: a Hugging Face ``model_type`` llama.cpp spells otherwise
            (``"gemma3_text"``, ``"mistral"``) is told its llama.cpp name; anything else the nearest names
            of the list. ``flag`` names the argument in the message.
    """
    hint = "" if hint is None else str(hint)
    if not hint.strip():
        raise ValueError(f"{flag} is empty: give llama.cpp's architecture name, e.g. 'llama' or 'gemma3'")
    names = _llama_cpp_names()
    if hint in names:
        return hint
    if hint in _MODEL_TYPE:
        raise ValueError(f"{flag} {hint!r} is a Hugging Face model_type; llama.cpp calls that architecture "
                         f"{_MODEL_TYPE[hint]!r}: write {flag} {_MODEL_TYPE[hint]}")
    near = difflib.get_close_matches(hint.strip().lower(), sorted(names), n=5, cutoff=0.5)
    raise ValueError(f"{flag} {hint!r} is not an architecture name of llama.cpp (the gguf package's MODEL_ARCH_NAMES, "
                     f"{len(names)} names); nearest: {', '.join(near) if near else 'none close'}")


def llama_cpp_architecture(model) -> str | None:
    """The booted ``model``'s architecture as llama.cpp spells it (``"llama"``, ``"gemma3"``, ...), or None.

    A model booted from a GGUF file: that file's ``general.architecture`` (kept in the converted folder's
    ``interp_gguf.json``). Otherwise its Hugging Face class or ``model_type`` through the table of
    llama.cpp's ``convert_hf_to_gguf.py``; a ``model_type`` that is itself a llama.cpp name is taken as it is.
    """
    source = getattr(model, "interp_source", None) or {}
    if "gguf" in source and source.get("path"):
        from interp.gguf import MARKER

        marker = Path(source["path"]) / MARKER
        if marker.is_file():
            arch = json.loads(marker.read_text()).get("header", {}).get("architecture")
            if arch:
                return str(arch)
    cls = getattr(getattr(model, "cfg", None), "architecture", None)
    if cls in _HF_CLASS:
        return _HF_CLASS[cls]
    inner = getattr(model, "original_model", None)
    model_type = getattr(getattr(model if inner is None else inner, "config", None), "model_type", None)
    if model_type in _MODEL_TYPE:
        return _MODEL_TYPE[model_type]
    if model_type and model_type in _llama_cpp_names():
        return str(model_type)
    return None


def _field(reader, key: str):
    """The value of a GGUF field, or None when the file has no such key."""
    field = reader.fields.get(key)
    return None if field is None else field.contents()


def _read(path: Path, what: str):
    """A ``GGUFReader`` of ``path``.

    Raises:
        FileNotFoundError: no file there. ValueError: not a readable GGUF file.
    """
    from gguf import GGUFReader

    if not path.is_file():
        raise FileNotFoundError(f"no {what} at {path}")
    try:
        return GGUFReader(str(path))
    except Exception as e:  # noqa: BLE001 - any parse failure means "not a GGUF file we can read"
        raise ValueError(f"{path} is not a readable GGUF file ({type(e).__name__}: {e})") from None


def gguf_model_identity(path: str | os.PathLike) -> dict:
    """:func:`steering.vector.model_identity` of a llama.cpp model file, from its header:
    ``{"name", "architecture", "n_layers", "d_model", "gguf_sha256"}``.

    Raises:
        ValueError: not a GGUF model file (a control vector file, or no block count / embedding length).
    """
    from interp.gguf import file_sha256

    path = Path(path).expanduser()
    reader = _read(path, "GGUF model file")
    arch = _field(reader, "general.architecture")
    if arch == CONTROL_VECTOR_ARCH:
        raise ValueError(f"{path} is a control vector, not a model: pass the model's .gguf file")
    n_layers = _field(reader, f"{arch}.block_count")
    d_model = _field(reader, f"{arch}.embedding_length")
    del reader
    if arch is None or n_layers is None or d_model is None:
        raise ValueError(f"{path} is not a llama.cpp model file: it lacks general.architecture, "
                         f"{arch}.block_count or {arch}.embedding_length")
    return {"name": str(path), "architecture": str(arch), "n_layers": int(n_layers), "d_model": int(d_model),
            "gguf_sha256": file_sha256(path)}


# ---------------------------------------------------------------------------------------------- export


#: How :func:`export_gguf`'s messages name what to pass: Python arguments, or (``interp export``) its flags.
_PYTHON = {"model": "model=", "hint": "model_hint", "pass_hint": "model_hint=",
           "boot": "the booted model as model= (interp.load_model(...))", "select": "vector.select({layers})"}
_CLI = {"model": "--model", "hint": "--model-hint", "pass_hint": "--model-hint",
        "boot": "--model (the model's folder, hub id or .gguf file: it is booted on the CPU)",
        "select": "--layers {span}"}

#: Why a site inside the block cannot be moved to the block's output.
_INSIDE = {
    "resid_mid": "what is added after attention passes through the block's MLP (its input norm and nonlinearity) "
                 "before it reaches the block's output",
    "attn_out": "what is added to the attention output passes through the block's MLP (its input norm and "
                "nonlinearity) before it reaches the block's output",
    "mlp_pre": "what is added to the MLP's pre-activation passes through its nonlinearity before it reaches the "
               "block's output",
}


def post_feedforward_norm(model, layer: int) -> bool:
    """Whether block ``layer`` of the booted ``model`` normalises its MLP output before adding it to the residual
    stream (Gemma 2/3's post-feedforward RMSNorm, ``blocks.L.ln2_post``; as
    :func:`interp.confidence.neuron_directions` detects it)."""
    return "ln2_post" in dict(model.blocks[layer].named_children())


def _span(layers) -> str:
    """Block indices as ``interp export --layers`` takes them: consecutive runs as ``a-b`` (``"2-5,7"``)."""
    runs: list[list[int]] = []
    for layer in sorted(layers):
        if runs and layer == runs[-1][1] + 1:
            runs[-1][1] = layer
        else:
            runs.append([layer, layer])
    return ",".join(str(a) if a == b else f"{a}-{b}" for a, b in runs)


def direction_index(site: str, layer: int) -> int:
    """The llama.cpp ``direction.<k>`` index that adds what ``site`` of block ``layer`` adds (module docstring).

    >>> direction_index("resid_post", 3), direction_index("resid_pre", 3), direction_index("mlp_out", 3)
    (3, 2, 3)

    Raises:
        ValueError: a site other than ``resid_post``/``resid_pre``/``mlp_out`` (``mlp_post`` depends on the
            model: :func:`as_block_outputs`), or a block whose site llama.cpp cannot reach (``resid_post`` and
            ``mlp_out`` of block 0; ``resid_pre`` of blocks 0 and 1).
    """
    if site in CONVERTED_SITES:
        raise ValueError(f"{site} of block {layer} is direction.{layer} times the block's W_out, only where the block "
                         "adds its MLP output straight into the residual stream; that depends on the model: "
                         "as_block_outputs(vector, model) and export_gguf(vector, path, model=...) convert it")
    _refuse_site(site, None, _PYTHON)
    k = layer - 1 if site == "resid_pre" else layer
    if site == "resid_pre" and layer == 0:
        raise ValueError("resid_pre of block 0 (the embeddings entering the first block) cannot be expressed: "
                         "llama.cpp adds control vectors to block outputs only")
    if k == 0:
        what = "resid_pre of block 1 (= resid_post of block 0)" if site == "resid_pre" else f"{site} of block 0"
        raise ValueError(f"{what} cannot be expressed: it would be direction.0, and llama.cpp never adds one "
                         "(common_control_vector_load_one refuses 'invalid (zero) direction tensor layer index'; "
                         "llama_adapter_cvec has no tensor for layer 0); drop that layer with vector.select(...)")
    return k


def _refuse_site(site: str, model, words: dict) -> None:
    """Refuse a site llama.cpp cannot express, and ``mlp_post`` without a booted model."""
    if site in SUPPORTED_SITES:
        return
    if site not in _INSIDE and site not in CONVERTED_SITES:
        raise ValueError(f"unknown site {site!r}; a control vector is exported from {', '.join(SUPPORTED_SITES)} "
                         f"or {', '.join(CONVERTED_SITES)}")
    if site not in CONVERTED_SITES:
        raise ValueError(f"site {site!r} cannot be a llama.cpp control vector, which is added to each block's output "
                         f"only: {_INSIDE[site]}, so no vector at the output adds the same; supported sites: "
                         f"{', '.join(SUPPORTED_SITES)} (resid_pre of block k is exported as the output of block k-1), "
                         f"and {', '.join(CONVERTED_SITES)} given the booted model")
    if model is None or isinstance(model, (str, os.PathLike)):
        missing = ("no model is given to tell" if model is None else
                   f"the header of {model} does not tell, nor hold W_out")
        raise ValueError(f"{site} of block k is what llama.cpp adds to the output of block k only after multiplying by "
                         "the block's W_out, and only where the block adds that product straight into the residual "
                         f"stream (no post-feedforward norm); {missing}: pass {words['boot']}")


def _refuse_layers(vector: SteeringVector, words: dict) -> None:
    """Refuse the layers llama.cpp cannot reach: block 0's output (direction.0) and the embeddings."""
    first = 2 if vector.site == "resid_pre" else 1
    bad = [layer for layer in vector.layers if layer < first]
    if not bad:
        return
    parts = []
    for layer in bad:
        if vector.site != "resid_pre":
            parts.append(f"{vector.site} of block {layer}")
        elif layer == 0:
            parts.append("resid_pre of block 0 (the embeddings entering the first block)")
        else:
            parts.append("resid_pre of block 1 (= resid_post of block 0)")
    good = [layer for layer in vector.layers if layer >= first]
    fix = (f"drop {'it' if len(bad) == 1 else 'them'} with {words['select'].format(layers=good, span=_span(good))}"
           if good else f"none of the vector's layers can be exported: a control vector steers the output of block 1 "
                        f"and later ({'resid_pre of block 2' if vector.site == 'resid_pre' else 'block 1'} and later)")
    raise ValueError(f"{' and '.join(parts)} cannot be expressed: it would be direction.0 or come before it, and "
                     "llama.cpp never adds direction.0 (common_control_vector_load_one refuses 'invalid (zero) "
                     "direction tensor layer index'; llama_adapter_cvec has no tensor for layer 0) nor anything to "
                     f"the embeddings; {fix}")


def as_block_outputs(vector: SteeringVector, model=None) -> SteeringVector:
    """``vector`` as llama.cpp will add it: a vector at ``resid_post`` whose layer ``k`` is ``direction.<k>``
    (rows unscaled, ``scale`` kept; ``meta["exported_from"]`` the site and layers it came from).

    ``resid_post`` as it is; ``resid_pre`` of block ``k`` as ``resid_post`` of block ``k - 1``; ``mlp_out`` of block
    ``k`` as ``resid_post`` of block ``k`` (the tensor the block adds to the residual stream, on every model); given
    the booted ``model``, an ``mlp_post`` feature ``f`` as ``f @ W_out`` of block ``k`` (float64 product), where
    the block adds that product straight into the residual stream (module docstring).

    Raises:
        ValueError: a site llama.cpp cannot express; ``mlp_post`` without a booted model, or on a block with a
            post-feedforward norm (Gemma 2/3), where no fixed vector at the output adds the same (or a residual
            multiplier, or no single ``W_out``); a layer llama.cpp cannot reach (block 0's output); a model the
            vector does not fit.
    """
    return _block_outputs(vector, model, _PYTHON)


def _block_outputs(vector: SteeringVector, model, words: dict, *, checked: bool = False) -> SteeringVector:
    _refuse_site(vector.site, model, words)
    _refuse_layers(vector, words)
    site = vector.site
    if site == "resid_post":
        return vector
    meta = {**vector.meta, "exported_from": {"site": site, "layers": list(vector.layers)}}
    if site == "resid_pre":
        return replace(vector, layers=tuple(layer - 1 for layer in vector.layers), site="resid_post", meta=meta)
    if site == "mlp_out":
        return replace(vector, site="resid_post", meta={**meta, "conversion": _CONVERSIONS["mlp_out"]})
    if not checked:
        check_model(vector, model, "the vector")  # its width (d_mlp) and blocks
    _refuse_mlp_post(vector, model)
    rows = torch.stack([vector.at(layer).double() @ model.blocks[layer].mlp.W_out.detach().to("cpu", torch.float64)
                        for layer in vector.layers])
    return SteeringVector(rows.float(), vector.layers, "resid_post", vector.scale,
                          {**meta, "conversion": _CONVERSIONS["mlp_post"]})


def _refuse_mlp_post(vector: SteeringVector, model) -> None:
    """Refuse an ``mlp_post`` vector on blocks where ``f @ W_out`` is not what reaches the residual stream."""
    normed = [layer for layer in vector.layers if post_feedforward_norm(model, layer)]
    if normed:
        raise ValueError(f"mlp_post of block(s) {normed} cannot be exported for this model: its blocks normalise the "
                         "MLP output before adding it to the residual stream (a post-feedforward norm, "
                         "blocks.k.ln2_post, as Gemma 2 and 3 have), which rescales each token's MLP output by its "
                         "own norm, so no fixed vector at the block's output adds what a feature at mlp_post adds; "
                         "build the vector at mlp_out (after that norm), resid_post or resid_pre instead")
    scaled = [layer for layer in vector.layers
              if float(getattr(model.blocks[layer], "residual_contribution_scale", 1.0)) != 1.0]
    if scaled:
        raise ValueError(f"mlp_post of block(s) {scaled} cannot be exported for this model: its blocks scale the MLP "
                         "output before the residual add (a residual multiplier), which this conversion does not "
                         "apply; build the vector at mlp_out, resid_post or resid_pre instead")
    plain = [layer for layer in vector.layers if getattr(model.blocks[layer].mlp, "W_out", None) is None]
    if plain:
        raise ValueError(f"mlp_post of block(s) {plain} cannot be exported for this model: the MLP has no single "
                         "out-projection W_out (a mixture of experts?); build the vector at mlp_out, resid_post or "
                         "resid_pre instead")


#: What a converted site's ``direction.<k>`` holds (``interp.conversion``).
_CONVERSIONS = {
    "mlp_out": "mlp_out of block k added as the output of block k (its MLP output is added straight into the "
               "residual stream)",
    "mlp_post": "mlp_post feature f of block k written as f @ W_out of block k, added as the output of block k",
}


def export_gguf(vector: SteeringVector, path: str | os.PathLike, model=None, *,
                model_hint: str | None = None) -> Path:
    """Write ``vector`` as a llama.cpp control vector; atomic. Returns the path written.

    Args:
        vector: at site ``resid_post``, ``resid_pre`` or ``mlp_out`` (see :func:`direction_index` for the layer
            mapping), or ``mlp_post`` given the booted ``model`` (:func:`as_block_outputs`).
        path: the file; ``.gguf`` is appended when it has another suffix or none.
        model: the model it will steer: a booted model or the path of its ``.gguf`` file. The vector must fit
            it (width, layers within its blocks) and, when it records the model it was made for
            (``meta["model_identity"]``), be that model (:func:`steering.vector.compare_identity`). Its identity
            is recorded in the file (``interp.model``). Default: the recorded model, which names the architecture.
        model_hint: ``controlvector.model_hint``, llama.cpp's architecture name (:func:`check_model_hint`, e.g.
            ``"llama"``); default the model's. llama.cpp itself does not read it.

    Written: ``direction.<k>`` = ``vector.at(layer) * vector.scale`` in float32 for each layer (converted as
    :func:`as_block_outputs` says), with ``controlvector.model_hint``, ``controlvector.layer_count`` (the number
    of directions, int32, as llama.cpp's cvector-generator writes it) and ``interp.*`` records: format, scale
    (baked), site and layers exported from, the conversion (if any), layer convention, positions, sign, the
    vector's meta (JSON), the model's identity (``interp.model``) and its layer count.

    Warns when the vector was meant for some positions only (llama.cpp adds at all of them), and when its
    scale is 0 (the file holds zero directions).

    Raises:
        ValueError: a site or layer llama.cpp cannot express; a model it does not fit or was not made for;
            a ``model_hint`` that is not a llama.cpp architecture name or names another architecture than the
            model's; no architecture known (give ``model`` or ``model_hint``); a scaled row that overflows
            float32; a path that is a folder.
    """
    return _export(vector, path, model, model_hint, _PYTHON)


def _export(vector: SteeringVector, path, model, model_hint, words: dict) -> Path:
    """:func:`export_gguf`, its messages naming what to pass as ``words`` says (Python arguments or CLI flags)."""
    if not isinstance(vector, SteeringVector):
        raise TypeError(f"expected a SteeringVector, got {type(vector).__name__}")
    _refuse_site(vector.site, model, words)
    _refuse_layers(vector, words)
    if not str(path).strip():
        raise ValueError("path is empty: give a file name such as 'vector.gguf'")
    path = Path(path).expanduser()
    if path.is_dir():
        raise ValueError(f"{path} is a folder: give a file name inside it, e.g. {path / 'vector.gguf'}")
    if path.suffix.lower() != ".gguf":
        path = path.with_name(path.name + ".gguf")
    if model_hint is not None:
        model_hint = check_model_hint(model_hint, words["hint"])
    recorded = vector.meta.get("model_identity")
    if model is not None:
        check_model(vector, model, "the vector")
        target = model_identity(model)
    else:
        target = dict(recorded) if isinstance(recorded, Mapping) else {}
    out = _block_outputs(vector, model, words, checked=True)
    arch = target.get("architecture")
    if model_hint is not None:
        if arch and model_hint != arch:
            raise ValueError(f"{words['hint']} {model_hint!r} names another architecture than the model's {arch!r}")
        arch = model_hint
    if not arch:
        raise ValueError(f"no architecture for controlvector.model_hint: the vector records no model; pass "
                         f"{words['model']} (the model or its .gguf file) or {words['pass_hint']} (llama.cpp's name, "
                         "e.g. 'llama', 'gemma3')")
    n_layers = target.get("n_layers")
    if n_layers is not None and max(vector.layers) >= n_layers:
        raise ValueError(f"the vector has layer {max(vector.layers)} but the model has {n_layers} blocks")
    if target.get("d_model") is not None and out.d != target["d_model"]:
        raise ValueError(f"the vector has width {out.d} but the model's d_model is {target['d_model']}")
    if vector.applied_positions != "all":
        warnings.warn(f"the vector was meant to be added at positions {vector.applied_positions!r} "
                      "(meta['applied_positions']); llama.cpp adds a control vector at every position of the prompt "
                      "and of the generated text, so the exported file steers more than that", stacklevel=3)
    if vector.scale == 0:
        warnings.warn("the vector's scale is 0, so every direction written is zero: llama.cpp adds nothing with this "
                      "file, and --control-vector-scaled only multiplies the zeros; export it with another scale "
                      "(vector.with_scale(s)) to steer", stacklevel=3)
    rows = out.vectors * vector.scale  # the same float32 product steering.Add adds
    if not bool(torch.isfinite(rows).all()):
        raise ValueError(f"scale {vector.scale:g} times the vector overflows float32; use a smaller scale")
    meta = {**vector.meta, "model_identity": target} if target else dict(vector.meta)
    _write(path, {f"direction.{k}": rows[i].numpy() for i, k in enumerate(out.layers)}, arch, vector, meta,
           n_layers, target, _CONVERSIONS.get(vector.site))
    return path


def _write(path: Path, tensors: dict[str, np.ndarray], hint: str, vector: SteeringVector, meta: dict,
           n_layers: int | None, identity: Mapping, conversion: str | None) -> None:
    """Write the GGUF file through a temporary file in the same folder, renamed into place."""
    from gguf import GGUFWriter

    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        writer = GGUFWriter(tmp, CONTROL_VECTOR_ARCH)
        writer.add_string(f"{CONTROL_VECTOR_ARCH}.model_hint", hint)
        writer.add_int32(f"{CONTROL_VECTOR_ARCH}.layer_count", len(tensors))
        writer.add_string("interp.format", _FORMAT)
        writer.add_float64("interp.scale", float(vector.scale))
        writer.add_string("interp.site", vector.site)
        writer.add_array("interp.layers", [int(layer) for layer in vector.layers])
        if conversion:
            writer.add_string("interp.conversion", conversion)
        writer.add_string("interp.layer_convention", _LAYER_CONVENTION)
        writer.add_string("interp.positions", json.dumps(vector.applied_positions))
        writer.add_string("interp.sign", vector.sign)
        writer.add_string("interp.meta", json.dumps(meta))
        if identity:
            writer.add_string("interp.model", json.dumps(dict(identity)))
        if n_layers is not None:
            writer.add_int32("interp.n_layers", int(n_layers))
        for name, data in tensors.items():
            writer.add_tensor(name, np.ascontiguousarray(data, dtype=np.float32))
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes it private; a written file is as any other
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


# ---------------------------------------------------------------------------------------------- import


def load_gguf(path: str | os.PathLike, model=None) -> SteeringVector:
    """Read a llama.cpp control vector (written here, by repeng or by llama.cpp's cvector-generator) as a
    :class:`SteeringVector` at site ``resid_post``: ``direction.<k>`` becomes block ``k`` (module docstring).

    ``model`` (optional; booted, or the path of its ``.gguf`` file): refuse a file that does not fit it
    (direction length other than ``d_model``, a block it does not have, a ``model_hint`` of another
    architecture) or that records another model (``interp.model``, written by :func:`export_gguf`; compared as
    :func:`steering.load_vector` compares a safetensors vector's, :func:`steering.vector.compare_identity`).

    Raises:
        FileNotFoundError: no file at ``path``.
        ValueError: not a GGUF file; ``general.architecture`` other than ``controlvector``; no tensors; a
            tensor not named ``direction.<k>``; a tensor that is not F32 (llama.cpp refuses F16 ones too) or
            not 1-D; a tensor holding NaN or inf (naming the file and the tensor); directions of different
            lengths; and the model checks above.
    """
    path = Path(path).expanduser()
    reader = _read(path, "control vector file")
    arch = _field(reader, "general.architecture")
    if arch != CONTROL_VECTOR_ARCH:
        said = "no general.architecture" if arch is None else f"general.architecture {arch!r}"
        raise ValueError(f"{path} is not a llama.cpp control vector: it has {said}, not {CONTROL_VECTOR_ARCH!r}"
                         + (" (a model file?)" if arch else ""))
    if not reader.tensors:
        raise ValueError(f"{path} holds no direction tensors")
    rows: dict[int, np.ndarray] = {}
    for t in reader.tensors:
        match = _DIRECTION.fullmatch(t.name)
        if match is None:
            raise ValueError(f"{path}: tensor {t.name!r} is not a direction: a control vector holds only tensors "
                             "named direction.<k> (k a block index)")
        if t.tensor_type.name != "F32":
            raise ValueError(f"{path}: tensor {t.name} is {t.tensor_type.name}, not F32; llama.cpp refuses it too "
                             "('invalid (non-F32) direction tensor type'): write the file with float32 directions")
        shape = [int(x) for x in t.shape]
        if sum(1 for x in shape if x != 1) > 1:
            raise ValueError(f"{path}: tensor {t.name} has shape {shape}; a direction is 1-D (n_embd)")
        row = np.array(t.data, dtype=np.float32).reshape(-1)
        bad = int((~np.isfinite(row)).sum())
        if bad:
            raise ValueError(f"{path}: tensor {t.name} holds NaN or inf in {bad} of its {row.size} entries; a "
                             "control vector is added to the hidden state as it is, so llama.cpp would turn every "
                             "activation after that block into NaN")
        rows[int(match.group(1))] = row
    lengths = sorted({len(r) for r in rows.values()})
    if len(lengths) > 1:
        raise ValueError(f"{path}: the directions have different lengths {lengths}; all must be n_embd")
    hint = _field(reader, f"{CONTROL_VECTOR_ARCH}.model_hint")
    fields = {key: _field(reader, key) for key in reader.fields if key.startswith("interp.")}
    layer_count = _field(reader, f"{CONTROL_VECTOR_ARCH}.layer_count")
    del reader
    if 0 in rows:
        warnings.warn(f"{path} has direction.0 (the output of block 0), which llama.cpp refuses ('invalid (zero) "
                      "direction tensor layer index'); it is read as resid_post of block 0", stacklevel=2)
    layers = sorted(rows)
    if fields.get("interp.format") == _FORMAT:
        meta = json.loads(fields.get("interp.meta") or "{}")
        baked = float(fields.get("interp.scale", 1.0))
        meta.update(baked_scale=baked,
                    exported_from={"site": fields.get("interp.site"), "layers": list(fields.get("interp.layers", []))})
        if fields.get("interp.conversion"):
            meta["conversion"] = fields["interp.conversion"]
        if fields.get("interp.model"):  # the model it was exported for (load_vector's check below reads it)
            meta["model_identity"] = json.loads(fields["interp.model"])
        if baked < 0:  # the rows are the vector times a negative scale: they point the other way
            meta["sign"] = f"reversed by the baked scale {baked:g}: {fields.get('interp.sign', '')}"
    else:
        meta = {"method": "llama.cpp control vector", "sign": "as stored in the file (repeng signs each direction "
                "so the positive prompts project higher; cvector-generator's PCA sign is arbitrary)"}
    meta.update(source_file=path.name, model_hint=hint, layer_convention=_LAYER_CONVENTION)
    if layer_count is not None:
        meta["layer_count"] = int(layer_count)
    vector = SteeringVector(torch.from_numpy(np.stack([rows[k] for k in layers])), tuple(layers), "resid_post",
                            1.0, meta)
    if model is not None:
        actual = model_identity(model)
        if hint and actual.get("architecture") and hint_architecture(str(hint)) != actual["architecture"]:
            raise ValueError(f"{path} was made for a {hint!r} model (controlvector.model_hint), not this "
                             f"{actual['architecture']!r} one")
        check_model(vector, model, str(path))
    return vector
