"""Interventions on a running model: add, ablate, clamp — as context managers.

Every intervention attaches its hooks through :func:`interp.attached`, so they
are removed when the ``with`` block exits, also when its body raises. They
compose: nest several context managers, or pass a list to :func:`apply`.

>>> with steering.add(model, vec, scale=4.0, positions="last"):   # doctest: +SKIP
...     model(ids)
>>> with steering.apply(model, [Ablate(refusal), Add(lang, scale=2)]):   # doctest: +SKIP
...     ...

Positions
---------
``positions`` selects the token positions an :class:`Add` or :class:`Clamp`
acts on:

* ``"all"`` — every position of the prompt and every generated token;
* ``"prompt"`` — the prompt's tokens only;
* ``"generated"`` — every generated token (the tokens fed back in by
  :func:`steering.generate`; the prompt's last token, which predicts the first
  new token, is ``"last"``);
* ``"last"`` or a negative int ``k`` — the prompt's ``k``-th token from its end
  (``-1`` = ``"last"``); the post-instruction tokens of a chat template are
  ``-1, -2, ...``;
* a list of the above: their union.

Offsets count from the end of the prompt, so batches must be left-padded
(:func:`steering.generate` and the toolkit's helpers are). Inside
:func:`steering.generate` the prompt/generated boundary is known exactly; in a
plain ``model(...)`` call under the context, the whole input counts as prompt,
so ``"generated"`` alone would match nothing there and raises ``ValueError``,
as does an offset reaching before the prompt's first token.
Padding slots may be edited too: they are masked out of attention, so this
never reaches a real token.

Directional ablation (Arditi et al. 2024, "Refusal in language models is
mediated by a single direction") projects a unit direction ``r`` out of every
residual-stream write: ``x <- x - (x . r) r`` at ``resid_pre``, ``attn_out``
and ``mlp_out`` of every layer, at every position, so no block can read or
write the direction. Clamping sets the projection to a value:
``x <- x + (c - x . r) r``.
"""

from __future__ import annotations

import contextvars
import math
import warnings
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Union

import torch

from interp._checks import as_int
from interp.hooks import attached
from interp.sites import check_layers, hook_name, site_width

from .vector import NEGLIGIBLE, SteeringVector

__all__ = ["Add", "Ablate", "Clamp", "Deactivate", "Intervention", "add", "ablate", "clamp", "apply", "prompt_window"]

PositionSpec = Union[str, int, Sequence[Union[str, int]]]
_NAMED = ("all", "prompt", "generated", "last")

# (prompt_length, offset of the current forward's first position), set by generate().
_WINDOW: contextvars.ContextVar[tuple[int, int] | None] = contextvars.ContextVar("steering_window", default=None)


@contextmanager
def prompt_window(prompt_length: int, offset: int = 0) -> Iterator[None]:
    """Tell the interventions where the (left-padded) prompt ends during one forward.

    ``prompt_length``: padded length of the prompt; ``offset``: absolute
    position of the first token of this forward (the KV-cache length).
    """
    token = _WINDOW.set((int(prompt_length), int(offset)))
    try:
        yield
    finally:
        _WINDOW.reset(token)


def _check_positions(spec: PositionSpec) -> tuple:
    items = [spec] if isinstance(spec, (str, int)) else list(spec)
    if not items:
        raise ValueError("positions is empty")
    for p in items:
        if isinstance(p, bool) or not (p in _NAMED if isinstance(p, str) else isinstance(p, int) and p < 0):
            raise ValueError(
                f"invalid position {p!r}: use 'all', 'prompt', 'generated', 'last', a negative offset from the "
                "prompt's end (-1 = last), or a list of these"
            )
    return tuple(items)


def _position_mask(spec: tuple, n_pos: int, device) -> torch.Tensor | None:
    """``[pos]`` bool mask of the current forward's positions, or None for every position."""
    if "all" in spec:
        return None
    window = _WINDOW.get()
    prompt_len, offset = window if window is not None else (n_pos, 0)
    if offset == 0:
        _check_matches(spec, prompt_len, generating=window is not None)
    pos = torch.arange(offset, offset + n_pos, device=device)
    mask = torch.zeros(n_pos, dtype=torch.bool, device=device)
    for p in spec:
        if p == "prompt":
            mask |= pos < prompt_len
        elif p == "generated":
            mask |= pos >= prompt_len
        else:
            mask |= pos == prompt_len + (-1 if p == "last" else p)
    return mask


def _check_matches(spec: tuple, prompt_len: int, generating: bool) -> None:
    """Refuse a position spec that matches no token of the call it is used in (checked on its first forward).

    Raises:
        ValueError: only ``"generated"`` in a plain forward (outside :func:`steering.generate` every input
            token is prompt), or a negative offset reaching before the first of ``prompt_len`` tokens.
    """
    if not generating and all(p == "generated" for p in spec):
        raise ValueError(
            "positions='generated' matches no token in a plain forward pass: outside steering.generate the whole "
            "input is the prompt, so nothing would be steered; use positions='all', 'prompt', 'last' or a negative "
            "offset here, or pass the intervention to steering.generate"
        )
    early = [p for p in spec if isinstance(p, int) and prompt_len + p < 0]
    if early:
        raise ValueError(f"position {early[0]} is before the first of the prompt's {prompt_len} tokens, so it "
                         f"matches no token; use an offset from -1 to -{prompt_len}")


def _placed(t: torch.Tensor, keep_dtype: bool = False):
    """``get(act)``: ``t`` on ``act``'s device and dtype (``keep_dtype``: ``t``'s own), copied once per
    device and dtype.

    Hooks run at every layer of every generated token; a host-to-device copy in
    each call would make the GPU wait for the host each time.
    """
    cache: dict = {}

    def get(act: torch.Tensor) -> torch.Tensor:
        key = (act.device, t.dtype if keep_dtype else act.dtype)
        if key not in cache:
            cache[key] = t.to(*key)
        return cache[key]

    return get


def _check_vector(model, vector: SteeringVector, site: str | None = None) -> None:
    if not isinstance(vector, SteeringVector):
        raise TypeError(f"expected a SteeringVector, got {type(vector).__name__}")
    width = site_width(model, site or vector.site)
    if vector.d != width:
        raise ValueError(
            f"steering vector has width {vector.d} but the model's {site or vector.site} has width {width} "
            f"(vector meta: {vector.meta.get('model', 'unknown model')})"
        )
    check_layers(list(vector.layers), int(model.cfg.n_layers))


class Intervention:
    """Base class: an intervention turns into ``(hook_name, fn)`` pairs for a model."""

    def hooks(self, model) -> list[tuple[str, object]]:  # pragma: no cover - abstract
        raise NotImplementedError


@dataclass(frozen=True)
class Add(Intervention):
    """Add ``scale * vector`` at the vector's site, at ``layers`` (default: the vector's) and ``positions``."""

    vector: SteeringVector
    scale: float | None = None
    layers: Sequence[int] | None = None
    positions: PositionSpec = "all"

    def __post_init__(self):
        if self.scale is not None:
            _finite("scale", self.scale)

    def hooks(self, model):
        _check_vector(model, self.vector)
        spec = _check_positions(self.positions)
        layers = self.vector.layers if self.layers is None else check_layers(self.layers, int(model.cfg.n_layers))
        scale = self.vector.scale if self.scale is None else float(self.scale)
        zero = [layer for layer in layers if float(self.vector.at(layer).norm()) * abs(scale) == 0]
        if zero:
            warnings.warn(f"adding a zero vector at layer(s) {zero} changes nothing (a norm-0 direction, e.g. a "
                          "difference of means of identical prompt sets, or scale 0)", stacklevel=3)
        tiny = [layer for layer in layers if layer in self.vector.layers and layer not in zero
                and (_relative_norm(self.vector, layer) or 1.0) * abs(scale) < NEGLIGIBLE]
        if tiny:
            warnings.warn(f"adding the vector at layer(s) {tiny} changes nothing measurable: its difference of means "
                          f"times the scale is below {NEGLIGIBLE:g} of the activations' norm (float rounding)",
                          stacklevel=3)
        out = []
        for layer in layers:
            row = self.vector.at(layer) * scale
            if not bool(torch.isfinite(row).all()):
                raise ValueError(f"scale {scale:g} times the vector at layer {layer} (norm "
                                 f"{float(self.vector.at(layer).norm()):.3g}) overflows float32; use a smaller scale")
            vec = _placed(row)
            check = _size_check(float(row.norm()), f"the vector added at layer {layer}", refuse=False)

            def fn(act, hook, vec=vec, check=check):
                check(act)
                v = vec(act)
                mask = _position_mask(spec, act.shape[1], act.device)
                if mask is None:
                    return act + v
                return act + mask[:, None].to(act.dtype) * v

            out.append((hook_name(self.vector.site, layer), fn))
        return out


def _unit(vector: SteeringVector, layer: int | None) -> torch.Tensor:
    """The unit direction ablation and clamping use.

    Raises:
        ValueError: several rows and no ``layer``; a row of norm 0 (no direction to project on).
    """
    if layer is not None:
        row = vector.select(layer).vectors[0]
    elif len(vector.layers) != 1:
        raise ValueError(
            f"this vector has directions at layers {list(vector.layers)}; pass layer= to choose the one to use "
            "(ablation and clamping use one direction everywhere)"
        )
    else:
        row = vector.vectors[0]
    if not float(row.norm()) > 0:
        raise ValueError("the direction has norm 0 (e.g. a difference of means of identical prompt sets): there is "
                         "nothing to ablate or clamp; check the prompts it was built from")
    layer = vector.layers[0] if layer is None else layer
    rel = _relative_norm(vector, layer)
    if rel is not None and rel < NEGLIGIBLE:
        raise ValueError(f"the direction at layer {layer} is a difference of means {rel:.2g} of the activations' "
                         "norm (float rounding: the two prompt sets' means agree), so its direction is noise: there "
                         "is nothing to ablate or clamp; check the prompts it was built from")
    return row / row.norm()


def _size_check(norm: float, what: str, refuse: bool):
    """``check(act)`` for a hook's first call: ``what`` (of norm ``norm``) against the mean norm of the activations
    it meets. Below :data:`~steering.vector.NEGLIGIBLE` of it, the vector is float rounding (a hand-built
    difference of means of two sets with the same mean, say): ablating or clamping its direction would act on
    noise (``refuse``: raise), adding it changes nothing measurable (warn). One host sync per context."""
    done: list[bool] = []

    def check(act: torch.Tensor) -> None:
        if done or norm == 0:
            return
        done.append(True)
        size = float(act.detach().float().norm(dim=-1).mean())
        if not size > 0 or norm >= NEGLIGIBLE * size:
            return
        message = (f"{what} has norm {norm:.3g}, {norm / size:.2g} of the activations' mean norm {size:.3g} at "
                   f"the first hook point it meets: float rounding, not a direction")
        if refuse:
            raise ValueError(f"{message}; there is nothing to ablate or clamp (check how it was built)")
        warnings.warn(f"{message}; adding it changes nothing measurable", stacklevel=2)

    return check


def _relative_norm(vector: SteeringVector, layer: int) -> float | None:
    """``||difference|| / mean activation norm`` of a mean-difference vector's ``layer`` (None if unrecorded)."""
    rel = (vector.meta.get("relative_norm") or {}).get(str(layer))
    return float(rel) if isinstance(rel, (int, float)) else None


def _raw_norm(vector: SteeringVector, layer: int | None) -> float:
    """Norm of the row :func:`_unit` normalises."""
    return float((vector.at(layer) if layer is not None else vector.vectors[0]).norm())


def _finite(name: str, value) -> float:
    """``value`` as a finite float.

    Raises:
        ValueError: NaN, inf, or not a number.
    """
    try:
        if isinstance(value, (str, bytes)):
            raise TypeError
        x = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a finite number, got {value!r}") from None
    if not math.isfinite(x):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    return x


@dataclass(frozen=True)
class Ablate(Intervention):
    """Project a unit direction out of ``resid_pre``, ``attn_out`` and ``mlp_out`` of ``layers`` (default all).

    ``layer`` picks which of the vector's rows is the direction when it has
    several (the selected layer of a refusal direction, say).
    """

    vector: SteeringVector
    layer: int | None = None
    layers: Sequence[int] | None = None

    def __post_init__(self):
        _unit(self.vector, self.layer)  # a zero direction, or several without layer=, is refused here

    def hooks(self, model):
        _check_vector(model, self.vector, "resid_pre")
        u = _placed(_unit(self.vector, self.layer).double())
        check = _size_check(_raw_norm(self.vector, self.layer), "the ablated direction", refuse=True)

        def fn(act, hook):
            check(act)
            r = u(act)
            return torch.addcmul(act, (act @ r)[..., None], r, value=-1)  # act - (act·r) r, one fused kernel

        names = []
        for layer in check_layers(self.layers, int(model.cfg.n_layers)):
            names += [hook_name(s, layer) for s in ("resid_pre", "attn_out", "mlp_out")]
        return [(n, fn) for n in names]


@dataclass(frozen=True)
class Clamp(Intervention):
    """Set the projection on the unit direction to ``value`` at the vector's site, ``layers`` and ``positions``."""

    vector: SteeringVector
    value: float = 0.0
    layer: int | None = None
    layers: Sequence[int] | None = None
    positions: PositionSpec = "all"

    def __post_init__(self):
        _finite("value", self.value)
        _unit(self.vector, self.layer)  # a zero direction, or several without layer=, is refused here

    def hooks(self, model):
        _check_vector(model, self.vector)
        spec = _check_positions(self.positions)
        u = _placed(_unit(self.vector, self.layer))
        layers = self.vector.layers if self.layers is None else check_layers(self.layers, int(model.cfg.n_layers))
        value = float(self.value)
        check = _size_check(_raw_norm(self.vector, self.layer), "the clamped direction", refuse=True)

        def fn(act, hook):
            check(act)
            r = u(act)
            delta = (value - act @ r)[..., None] * r
            mask = _position_mask(spec, act.shape[1], act.device)
            return act + (delta if mask is None else mask[:, None].to(act.dtype) * delta)

        return [(hook_name(self.vector.site, layer), fn) for layer in layers]


@dataclass(frozen=True)
class Deactivate(Intervention):
    """Set chosen MLP neurons (``mlp_post``) to ``value`` (default 0) at every position.

    ``neurons``: ``{layer: [neuron indices]}``, e.g. a language's LAPE neurons
    (:func:`probes.lape`), which Tang et al. (2024) deactivate to suppress a language.

    Raises:
        TypeError: ``neurons`` not a ``{layer: [neuron indices]}`` mapping (a list of indices, or a layer
            mapped to one int), or an index that is not an int.
        ValueError: a non-finite ``value``; at :meth:`hooks`, a layer or neuron index outside the model.

    Warns:
        UserWarning: at :meth:`hooks`, when ``neurons`` names no neuron at all (it changes nothing).
    """

    neurons: dict
    value: float = 0.0

    def __post_init__(self):
        _finite("value", self.value)
        if not isinstance(self.neurons, Mapping):
            raise TypeError(f"neurons must be {{layer: [neuron indices]}}, e.g. {{1: [5, 17]}}, got a "
                            f"{type(self.neurons).__name__}: {_short(self.neurons)}")
        for layer, idx in self.neurons.items():
            if isinstance(idx, (str, bytes, Mapping)) or not _iterable(idx):
                raise TypeError(f"neurons must be {{layer: [neuron indices]}}, e.g. {{1: [5, 17]}}; layer {layer!r} "
                                f"maps to {_short(idx)}, not a list of indices")
            if not hasattr(idx, "__len__"):  # a one-shot iterator: read once, by hooks()
                continue
            for i in (idx.flatten().tolist() if isinstance(idx, torch.Tensor) else idx):
                if as_int(i) is None:
                    raise TypeError(f"neurons[{layer!r}] holds {i!r}, not a neuron index (an int)")

    def hooks(self, model):
        n_layers, width = int(model.cfg.n_layers), site_width(model, "mlp_post")
        out = []
        for layer, idx in sorted(self.neurons.items()):
            check_layers([layer], n_layers)
            idx = torch.as_tensor(list(idx), dtype=torch.long)
            if idx.numel() == 0:
                continue
            if int(idx.min()) < 0 or int(idx.max()) >= width:
                raise ValueError(f"neuron index out of range for d_mlp={width} at layer {layer}")
            value = float(self.value)

            def fn(act, hook, idx=_placed(idx, keep_dtype=True)):
                act = act.clone()
                act[..., idx(act)] = value
                return act

            out.append((hook_name("mlp_post", layer), fn))
        if not out:
            warnings.warn(f"Deactivate has no neurons to deactivate (neurons={_short(self.neurons)}); it changes "
                          "nothing (e.g. a LAPE selection that found no neurons)", stacklevel=5)
        return out


def _short(x) -> str:
    text = repr(x)
    return text if len(text) <= 60 else text[:57] + "..."


def _iterable(x) -> bool:
    try:
        iter(x)
    except TypeError:
        return False
    return True


def _as_interventions(items) -> list[Intervention]:
    if items is None:
        return []
    if isinstance(items, (Intervention, SteeringVector)):
        items = [items]
    out = []
    for it in items:
        if isinstance(it, SteeringVector):
            it = Add(it)
        if not isinstance(it, Intervention):
            raise TypeError(f"expected SteeringVector or Add/Ablate/Clamp, got {type(it).__name__}")
        out.append(it)
    return out


@contextmanager
def apply(model, interventions) -> Iterator[object]:
    """Attach several interventions at once (a SteeringVector alone means ``Add(vector)``).

    All hooks are built and checked before any is attached; they are removed
    on exit, also when the body raises. Hooks at the same point run in the
    order given.
    """
    hooks = [h for it in _as_interventions(interventions) for h in it.hooks(model)]
    with attached(model, hooks):
        yield model


def add(model, vector: SteeringVector, *, scale: float | None = None, layers=None, positions: PositionSpec = "all"):
    """Context manager adding ``scale * vector`` (default: the vector's own scale); see :class:`Add`."""
    return apply(model, [Add(vector, scale, layers, positions)])


def ablate(model, vector: SteeringVector, *, layer: int | None = None, layers=None):
    """Context manager for directional ablation at every position; see :class:`Ablate`."""
    return apply(model, [Ablate(vector, layer, layers)])


def clamp(model, vector: SteeringVector, value: float = 0.0, *, layer: int | None = None, layers=None,
          positions: PositionSpec = "all"):
    """Context manager setting the projection on the direction to ``value``; see :class:`Clamp`."""
    return apply(model, [Clamp(vector, value, layer, layers, positions)])
