"""Compare a base language model with its post-trained version, layer by layer.

The base layer: boot a pair (:func:`load_pair`), format prompts
(:meth:`ModelPair.format`), and collect activations at named sites
(:func:`collect`) into :class:`Activations`, in memory or streamed to disk.

>>> import interp
>>> interp.hook_name("resid_post", 2)
'blocks.2.hook_resid_post'
"""

__version__ = "0.1.0"

import importlib

# Names are imported on first use (PEP 562), so `import interp` (and the `interp` command's argument checks) does
# not import torch: a bad command line is refused in a fraction of a second.
_LAZY = {
    "Activations": "activations", "ModelPair": "models", "SITES": "sites", "active_hooks": "hooks",
    "attached": "hooks", "collect": "collection", "collect_tokens": "collection", "hook_name": "sites",
    "load_model": "models", "load_pair": "models",
}


def __getattr__(name: str):
    if name in _LAZY:
        value = getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    else:
        try:
            value = importlib.import_module(f"{__name__}.{name}")  # a submodule: interp.positions, interp.compare
        except ModuleNotFoundError as e:
            if e.name != f"{__name__}.{name}":
                raise
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


__all__ = [
    "Activations",
    "ModelPair",
    "SITES",
    "active_hooks",
    "attached",
    "collect",
    "collect_tokens",
    "datasets",
    "hook_name",
    "load_model",
    "load_pair",
    "positions",
    "sites",
]
