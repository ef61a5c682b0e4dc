"""Directional ablation written into the weights (Arditi et al. 2024, Section 4 "weight orthogonalization").

:func:`orthogonalize` edits a model folder's weights so that no component writes along a unit direction ``r``
into the residual stream: every matrix that writes to it, ``W``, becomes ``W - r rᵀ W`` (the token embedding,
each attention output projection, each MLP down projection). The edited model computes what the original
computes under :class:`steering.Ablate` at every layer, with no hook: a checkpoint to compare, serve or
export. Where the unembedding shares the embedding's weights (tied), the copy is untied: ``lm_head.weight``
keeps the original embedding and ``tie_word_embeddings`` is set false, since editing the unembedding too would
change the logits (the final norm's gain puts a component along ``r`` back) and Arditi et al. leave it alone.

Supported: Llama-style folders (Llama, Qwen2, Mistral: ``embed_tokens``, ``self_attn.o_proj``,
``mlp.down_proj``); other architectures are refused by name. Gemma-2/3 normalise each block's output before
adding it (post-attention and post-feedforward RMSNorm, whose gain puts a component along ``r`` back), so no
linear edit of their weights removes ``r``; use :class:`steering.Ablate` there.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import torch

__all__ = ["orthogonalize", "WRITERS"]

#: Name endings of the weights that write into the residual stream, and the axis of ``d_model`` in each
#: (``[vocab, d]`` embedding rows; ``[d, k]`` output projections).
WRITERS = {"embed_tokens.weight": 1, "self_attn.o_proj.weight": 0, "mlp.down_proj.weight": 0}
_ARCHITECTURES = ("LlamaForCausalLM", "Qwen2ForCausalLM", "MistralForCausalLM")


def orthogonalize(folder: str | os.PathLike, direction: torch.Tensor, out: str | os.PathLike) -> Path:
    """Write a copy of the model in ``folder`` to ``out`` with ``direction`` orthogonalized out of every weight
    that writes to the residual stream (module docstring).

    Args:
        folder: a local model folder (``config.json`` and ``*.safetensors``; only safetensors are read).
        direction: ``[d_model]`` (or ``[1, d_model]``), any norm (it is normalised; e.g. a refusal direction of
            :func:`steering.refusal.select_direction` or ``SteeringVector.directions[layer]``), or a
            one-row :class:`~steering.SteeringVector` (e.g. ``RefusalSelection.vector``).
        out: a new or empty folder; receives the edited ``*.safetensors`` and every other file of ``folder``.

    Returns:
        ``out`` as a Path.

    Raises:
        ValueError: an unsupported architecture, a direction of another width or shape (not ``[d_model]`` or
            ``[1, d_model]``, or a SteeringVector with several rows) or of zero norm, a non-empty ``out``, a
            folder without safetensors weights, or weights in which no residual writer is found.
        TypeError: a ``direction`` that is not a tensor, an array or a SteeringVector.
    """
    from safetensors.torch import load_file, save_file

    r = _direction(direction)
    folder, out = Path(folder), Path(out)
    config = json.loads((folder / "config.json").read_text())
    arch = (config.get("architectures") or ["?"])[0]
    if arch not in _ARCHITECTURES:
        why = (" (its blocks normalise their output before adding it: no weight edit removes a direction; use "
               "steering.Ablate)" if arch.startswith("Gemma") else "")
        raise ValueError(f"orthogonalize supports {', '.join(_ARCHITECTURES)}; {folder} holds {arch}{why}")
    d = int(config.get("hidden_size") or config.get("text_config", {}).get("hidden_size"))
    if r.numel() != d or not torch.isfinite(r).all() or float(r.norm()) == 0:
        raise ValueError(f"direction must be [{d}] (the model's d_model), finite and nonzero; got {tuple(r.shape)} "
                         f"of norm {float(r.norm()):.3g}")
    r = r / r.norm()
    shards = sorted(folder.glob("*.safetensors"))
    if not shards:
        raise ValueError(f"{folder} holds no .safetensors weights")
    if out.exists() and any(out.iterdir()):
        raise ValueError(f"{out} is not empty; orthogonalize writes a new model folder")
    out.mkdir(parents=True, exist_ok=True)
    edited, tied = 0, _tied(config)
    for shard in shards:
        tensors = load_file(shard)
        if tied and not any(k.endswith("lm_head.weight") for k in tensors):
            for name in [k for k in tensors if k.endswith("embed_tokens.weight")]:
                head = name[: -len("embed_tokens.weight")].replace("model.", "", 1) + "lm_head.weight"
                tensors[head] = tensors[name].clone()  # the unembedding keeps the original weights
        for name, w in list(tensors.items()):
            axis = next((a for end, a in WRITERS.items() if name.endswith(end)), None)
            if axis is None:
                continue
            w64 = w.double()
            if axis == 0:  # [d, k]: W - r (rᵀ W)
                w64 = w64 - torch.outer(r, r @ w64)
            else:  # [vocab, d]: rows minus their r component
                w64 = w64 - torch.outer(w64 @ r, r)
            tensors[name] = w64.to(w.dtype).contiguous()
            edited += 1
        save_file(tensors, out / shard.name, metadata={"format": "pt"})
    if edited == 0:
        shutil.rmtree(out)
        raise ValueError(f"no weight of {folder} writes to the residual stream under the names "
                         f"{', '.join(WRITERS)}")
    for f in folder.iterdir():
        if f.is_file() and f.suffix != ".safetensors":
            shutil.copy2(f, out / f.name)
    if tied:
        for holder in (config, config.get("text_config") or {}):
            if "tie_word_embeddings" in holder or holder is config:
                holder["tie_word_embeddings"] = False
        (out / "config.json").write_text(json.dumps(config, indent=2))
    return out


def _direction(direction) -> torch.Tensor:
    """``direction`` as a flat float64 tensor: a ``[d]`` or ``[1, d]`` tensor or array, or a one-row SteeringVector.

    Raises:
        ValueError: another shape, or a SteeringVector with several rows.
        TypeError: something that is not a tensor, an array or a SteeringVector.
    """
    from .vector import SteeringVector

    if isinstance(direction, SteeringVector):
        if len(direction.layers) != 1:
            raise ValueError(f"direction is a SteeringVector with rows at layers {list(direction.layers)}; "
                             "orthogonalize takes one direction: pass vec.select(layer) or vec.at(layer)")
        direction = direction.vectors[0]
    try:
        r = torch.as_tensor(direction, dtype=torch.float64)
    except (TypeError, ValueError, RuntimeError):
        raise TypeError(f"direction must be a [d_model] tensor, e.g. vec.directions[0], got "
                        f"{type(direction).__name__}") from None
    if not (r.ndim == 1 or (r.ndim == 2 and r.shape[0] == 1)):
        raise ValueError(f"direction must be [d_model] (or [1, d_model]), got shape {tuple(r.shape)}; pass one "
                         "row, e.g. vec.directions[0]")
    return r.flatten()


def _tied(config: dict) -> bool:
    """Whether the unembedding shares the embedding's weights (transformers' default is tied)."""
    text = config.get("text_config") or {}
    return bool(config.get("tie_word_embeddings", text.get("tie_word_embeddings", True)))
