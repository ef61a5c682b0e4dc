"""Compare a base language model with its post-trained version, layer by layer.

The base layer: boot a pair (:func:`load_pair`), format prompts
(:meth:`ModelPair.format`), and collect activations at named sites
(:func:`collect`) into :class:`Activations`, in memory or streamed to disk.

>>> import interp
>>> interp.hook_name("resid_post", 2)
'blocks.2.hook_resid_post'
"""

__version__ = "0.1.0"

from . import datasets, positions, sites
from .activations import Activations
from .collection import collect, collect_tokens
from .hooks import active_hooks, attached
from .models import ModelPair, load_model, load_pair
from .sites import SITES, hook_name

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
