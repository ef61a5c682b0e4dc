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

__all__ = ["ROOT", "paths", "datasets"]

#: Folder of the shipped weights (``base/`` and ``post/``, Hugging Face format).
ROOT = Path(__file__).parent / "weights"


def paths() -> tuple[Path, Path]:
    """Folders of the bundled base and post models."""
    base, post = ROOT / "base", ROOT / "post"
    if not (base / "config.json").exists() or not (post / "config.json").exists():
        raise FileNotFoundError(
            f"the bundled model organism is missing from {ROOT}; rebuild it with "
            f"`interp organism train --out {ROOT}`, or pass explicit models: load_pair(BASE, POST)"
        )
    return base, post


def datasets(split: str = "test") -> dict[str, PromptSet]:
    """The organism's prompt sets: ``truth``, ``harmful``, ``harmless``, ``refusal``, ``languages``.

    ``split="test"`` gives the held-out rows (never trained on), ``"train"``
    the rows the corpus was built from.
    """
    from ._corpus import eval_sets

    return dict(eval_sets(split))
