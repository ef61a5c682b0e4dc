"""Steering vectors and interventions at inference.

* :class:`SteeringVector` — direction(s) per layer at a site, with scale and
  provenance, stored as safetensors + JSON metadata (:func:`load_vector`);
* :mod:`steering.gguf` — llama.cpp control vectors: :meth:`SteeringVector.export_gguf`
  writes one, :func:`load_vector` reads a ``.gguf`` one (also repeng's and llama.cpp's);
* interventions as context managers that always remove their hooks —
  :func:`add`, :func:`ablate` (directional ablation, Arditi et al. 2024),
  :func:`clamp`, or several at once with :func:`apply`;
* :func:`generate` — batched greedy or sampled generation with interventions
  active (KV-cached, left-padded);
* :mod:`steering.metrics` — refusal rate and score, next-token KL, held-out loss;
* :func:`calibrate_scale` — the scale that moves next-token KL to a target;
* :mod:`steering.refusal` — candidate refusal directions and their selection;
* :func:`orthogonalize` — directional ablation written into a model folder's weights.

>>> import torch, steering
>>> v = steering.SteeringVector(torch.ones(1, 4), layers=(0,))
>>> v.directions.norm().item()
1.0
"""

from . import gguf, metrics, refusal
from .calibrate import calibrate_scale
from .generation import Generation, generate
from .interventions import Ablate, Add, Clamp, Deactivate, Intervention, ablate, add, apply, clamp, prompt_window
from .vector import SteeringVector, load_vector, model_identity
from .weights import orthogonalize

__all__ = [
    "Ablate",
    "Add",
    "Clamp",
    "Deactivate",
    "Generation",
    "Intervention",
    "calibrate_scale",
    "SteeringVector",
    "ablate",
    "add",
    "apply",
    "clamp",
    "generate",
    "gguf",
    "load_vector",
    "metrics",
    "model_identity",
    "orthogonalize",
    "prompt_window",
    "refusal",
]
