"""The bundled model organism pair (the offline default of :func:`interp.load_pair`).

The pair — a tiny base model and its post-trained version with known truth,
refusal and language behaviour — is not shipped yet: it will be produced by
``interp organism train`` and stored inside this package.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["paths"]

ROOT = Path(__file__).parent / "organism_weights"


def paths() -> tuple[Path, Path]:
    """Folders of the bundled base and post models."""
    base, post = ROOT / "base", ROOT / "post"
    if not (base / "config.json").exists() or not (post / "config.json").exists():
        raise NotImplementedError(
            "the bundled model organism pair is not part of this version yet, so load_pair() needs "
            "explicit models: load_pair(BASE, POST) with hub ids or local folders "
            "(e.g. load_pair('Qwen/Qwen2.5-0.5B', 'Qwen/Qwen2.5-0.5B-Instruct'))"
        )
    return base, post
