"""Named activation sites and their TransformerLens hook names.

This is the one place where the toolkit's site names map to TransformerLens v4
(``TransformerBridge``) hook names. Everything else speaks of ``(site, layer)``.

Conventions
-----------
*Layer ``L`` means the output of block ``L``* (``resid_post``) unless a site
says otherwise. The full table, for a model with blocks ``0 .. n_layers-1``:

==============  ==============================  ===============================
site            hook name                       what it holds at layer ``L``
==============  ==============================  ===============================
``resid_pre``   ``blocks.L.hook_resid_pre``     residual stream entering block L
``resid_mid``   ``blocks.L.hook_resid_mid``     after attention, before the MLP
``resid_post``  ``blocks.L.hook_resid_post``    residual stream leaving block L
``attn_out``    ``blocks.L.hook_attn_out``      attention output added in block L
``mlp_out``     ``blocks.L.hook_mlp_out``       MLP output added in block L
``mlp_pre``     ``blocks.L.mlp.hook_pre``       MLP pre-activation, width ``d_mlp``:
                                                the gate projection ``W_gate x``
                                                of a gated MLP (Llama, Gemma),
                                                ``W_in x + b_in`` otherwise
``mlp_post``    ``blocks.L.mlp.hook_post``      MLP hidden activations (the input
                                                to the down/out projection),
                                                width ``d_mlp``
==============  ==============================  ===============================

``resid_pre`` of layer ``L+1`` equals ``resid_post`` of layer ``L``.

>>> hook_name("resid_post", 3)
'blocks.3.hook_resid_post'
>>> hook_name("mlp_post", 0)
'blocks.0.mlp.hook_post'
"""

from __future__ import annotations

from typing import Literal

from ._checks import as_int

__all__ = ["SITES", "Site", "hook_name", "site_width", "check_site", "check_layers"]

Site = Literal["resid_pre", "resid_mid", "resid_post", "attn_out", "mlp_out", "mlp_pre", "mlp_post"]

#: Site name -> hook-name template (``{layer}`` is substituted).
SITES: dict[str, str] = {
    "resid_pre": "blocks.{layer}.hook_resid_pre",
    "resid_mid": "blocks.{layer}.hook_resid_mid",
    "resid_post": "blocks.{layer}.hook_resid_post",
    "attn_out": "blocks.{layer}.hook_attn_out",
    "mlp_out": "blocks.{layer}.hook_mlp_out",
    "mlp_pre": "blocks.{layer}.mlp.hook_pre",
    "mlp_post": "blocks.{layer}.mlp.hook_post",
}


def check_site(site: str) -> str:
    """Return ``site`` if it is a known site name, else raise ``ValueError``."""
    if site not in SITES:
        raise ValueError(f"unknown site {site!r}; known sites: {', '.join(SITES)}")
    return site


def hook_name(site: str, layer: int) -> str:
    """TransformerLens hook name of ``site`` at block ``layer``.

    ``layer`` is a block index ``>= 0`` (an int, a numpy integer or a 0-d integer tensor); negative indices
    count from the end only where the model is known (:func:`check_layers`).

    Raises:
        ValueError: an unknown site, or a negative ``layer``.
        TypeError: a ``layer`` that is not an integer (e.g. ``1.7``).
    """
    index = as_int(layer)
    if index is None:
        raise TypeError(f"layer must be an integer block index, got {layer!r}")
    layer = index
    if layer < 0:
        raise ValueError(f"layer must be a block index >= 0, got {layer}; to count from the end, normalise it "
                         "first: interp.sites.check_layers([layer], n_layers)")
    return SITES[check_site(site)].format(layer=layer)


def check_layers(layers, n_layers: int) -> list[int]:
    """Normalise a layer selection to a sorted list of distinct block indices.

    ``layers`` may be ``None`` (all layers), an int (a numpy integer or a 0-d integer tensor too), or an
    iterable of ints. Negative indices count from the end, as in Python. Out-of-range layers raise
    ``ValueError`` naming the valid range.

    Raises:
        ValueError: an empty selection, or a layer out of range.
        TypeError: a layer that is not an integer (``1.7``, ``True``), or ``layers`` neither an int nor an
            iterable.

    >>> check_layers(None, 3)
    [0, 1, 2]
    >>> check_layers([-1, 0], 4)
    [0, 3]
    """
    if layers is None:
        return list(range(n_layers))
    if isinstance(layers, int) or getattr(layers, "ndim", None) == 0:  # numpy scalars, 0-d arrays and tensors
        layers = [layers]
    elif isinstance(layers, (str, bytes)) or not hasattr(layers, "__iter__"):
        raise TypeError(f"layers must be None, an int or a sequence of ints, got {layers!r}")
    out = []
    for layer in layers:
        index = as_int(layer)
        if index is None:
            raise TypeError(f"layers must be integers, got {layer!r}")
        layer = index
        if not -n_layers <= layer < n_layers:
            raise ValueError(
                f"layer {layer} is out of range for a model with {n_layers} layers "
                f"(valid: 0..{n_layers - 1}, or -{n_layers}..-1)"
            )
        out.append(layer % n_layers)
    if not out:
        raise ValueError("layers is empty; pass None for all layers")
    return sorted(set(out))


def site_width(model, site: str) -> int:
    """Width of the vectors stored at ``site``: ``d_mlp`` for ``mlp_pre`` and ``mlp_post``, else ``d_model``."""
    check_site(site)
    cfg = model.cfg
    if site in ("mlp_pre", "mlp_post"):
        d_mlp = getattr(cfg, "d_mlp", None)
        if not d_mlp:
            raise ValueError(f"model config has no d_mlp; cannot read site {site!r}")
        return int(d_mlp)
    return int(cfg.d_model)
