"""The bundled model organism pair: the offline default of :func:`interp.load_pair`.

A tiny Llama-family base model and its post-trained version, trained by the
project (``interp organism train``) on a generated corpus whose truth, refusal
and language behaviour is planted, so every method of the toolkit can be
checked against a known answer on a machine with no network. See
``docs/organism.md`` for what was planted, how, and the measured behaviour.

>>> from interp import organism
>>> sorted(organism.datasets("test"))
['harmful', 'harmless', 'languages', 'refusal', 'truth']
"""

from __future__ import annotations

from pathlib import Path

from ..datasets import PromptSet
from ._corpus import CHAT_TEMPLATE, JUDGE_CUE, REFUSALS

__all__ = ["ROOT", "GEMMA_ADAPTER", "PRESETS", "CHAT_TEMPLATE", "JUDGE_CUE", "REFUSALS", "paths", "gemma_paths",
           "datasets", "is_bundled"]

#: Folder of the shipped weights (``base/`` and ``post/``, Hugging Face format).
ROOT = Path(__file__).parent / "weights"
#: Folder of the shipped LoRA adapter of the real-base organism (:mod:`interp.organism.lora`).
GEMMA_ADAPTER = Path(__file__).parent / "gemma_lora"
#: Pair names :func:`interp.load_pair` accepts as ``base`` alone.
PRESETS = ("gemma-270m-organism",)


def gemma_paths(cache_dir: str | Path | None = None, adapter: str | Path | None = None) -> tuple[Path, Path]:
    """Folders of the real-base organism: google/gemma-3-270m (from the ``real`` extra's packages, converted
    once) and the same model with a LoRA adapter merged in (merged once, cached locally); ``adapter``
    defaults to the shipped one (:data:`GEMMA_ADAPTER`).

    Raises:
        FileNotFoundError: the adapter is not in the package. ImportError: the ``real`` extra is missing.
    """
    import torch

    from ..gguf import convert_gguf
    from ..registry import cache_root, gguf_path
    from .lora import merged_post_folder

    if adapter is not None:
        adapter = Path(adapter)
        if not (adapter / "adapter_model.safetensors").is_file():  # before minutes of conversion
            raise FileNotFoundError(f"no adapter_model.safetensors in {adapter}")
    elif not (GEMMA_ADAPTER / "adapter_model.safetensors").is_file():
        raise FileNotFoundError(
            f"the real-base organism's adapter is missing from {GEMMA_ADAPTER}; train it with "
            f"interp.organism.lora.train_gemma_organism({str(GEMMA_ADAPTER)!r}, '<shared>/datasets')"
        )
    cache = Path(cache_dir) if cache_dir is not None else cache_root()
    base = convert_gguf(gguf_path("gemma-3-270m", cache / "gguf-files"), dtype=torch.float32, cache_dir=cache / "gguf")
    return base, merged_post_folder(base, adapter or GEMMA_ADAPTER, cache / "organisms")


def paths() -> tuple[Path, Path]:
    """Folders of the bundled base and post models."""
    base, post = ROOT / "base", ROOT / "post"
    if not (base / "config.json").exists() or not (post / "config.json").exists():
        raise FileNotFoundError(
            f"the bundled model organism is missing from {ROOT}; rebuild it with "
            f"`interp organism train --out {ROOT}`, or pass explicit models: load_pair(BASE, POST)"
        )
    return base, post


def is_bundled(pair) -> bool:
    """Whether ``pair`` (a :class:`~interp.models.ModelPair`) is the bundled tiny organism, booted from
    :func:`paths` (its sections read its own prompt sets and positions)."""
    try:
        base, _ = paths()
    except FileNotFoundError:
        return False
    path = pair.base.interp_source.get("path")
    return path is not None and Path(path).resolve() == Path(base).resolve()  # however the folder was named


def datasets(split: str = "test") -> dict[str, PromptSet]:
    """The organism's prompt sets: ``truth``, ``harmful``, ``harmless``, ``refusal``, ``languages``.

    ``split="test"`` gives the held-out rows (never trained on), ``"train"``
    the rows the corpus was built from.
    """
    from ._corpus import eval_sets

    return dict(eval_sets(split))
