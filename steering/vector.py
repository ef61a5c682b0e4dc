"""Steering vectors: one direction per layer at one site, with a scale and provenance.

A :class:`SteeringVector` is what the interventions of :mod:`steering.interventions`
consume. It is stored as a single safetensors file: the ``[layer, d]`` tensor
and the layer indices as tensors, everything else (site, scale, provenance) as
JSON in the file's metadata header. Loading reads that one file with
``safetensors`` only — nothing is unpickled.

Builders:

* :meth:`SteeringVector.from_directions` — any ``[layer, d]`` stack;
* :meth:`SteeringVector.from_probe` — a fitted probe's unit direction;
* :meth:`SteeringVector.from_prompts` — collect two prompt sets from a model and
  take their difference of means (or paired PCA) per layer;
* :meth:`SteeringVector.from_mean_difference` — ``mean(positive) - mean(negative)``
  of two activation sets, per layer (Turner et al. 2023; Arditi et al. 2024);
* :meth:`SteeringVector.from_pca` — the top principal component of paired
  differences taken in both orders (Zou et al. 2023), signed so that positives
  project higher; ``center=True`` gives repeng's centred ``pca_diff``.

What a saved file records, besides the rows: the site, the layers (0-based block
indices: at ``resid_post`` layer ``L`` is the output of block ``L``, at
``resid_pre`` its input; :data:`LAYER_CONVENTION`), the default scale, the
position policy (``meta["applied_positions"]``: where the vector is meant to be
added, ``"all"`` unless said; not ``meta["positions"]``, which is where the
activations it was built from were *read*), the sign (what a positive scale
moves toward, :attr:`SteeringVector.sign`) and, where a model was given
(:meth:`SteeringVector.from_prompts`, :meth:`SteeringVector.with_model`,
``save(path, model=...)``), the model's identity (:func:`model_identity`: layer
count, width, llama.cpp architecture name and a sha256 of its weights), so that
``load_vector(path, model=other)`` refuses a model the vector was not made for.
Files written before these fields existed load as before.

llama.cpp control vectors (GGUF): :meth:`SteeringVector.export_gguf` writes one
and :func:`load_vector` reads a ``.gguf`` file, see :mod:`steering.gguf`.

>>> import torch
>>> pos, neg = torch.randn(20, 2, 8) + 1, torch.randn(20, 2, 8)
>>> v = SteeringVector.from_mean_difference(pos, neg, layers=[3, 4], site="resid_pre")
>>> v.layers, tuple(v.vectors.shape), v.site
((3, 4), (2, 8), 'resid_pre')
"""

from __future__ import annotations

import hashlib
import json
import math
import numbers
import os
import warnings
import weakref
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch
from jaxtyping import Float

from interp._io import save_safetensors
from interp.sites import SITES

__all__ = ["SteeringVector", "load_vector", "model_identity"]

_FORMAT = "interp.steering_vector/1"
#: A difference of means below this share of the activations' norm is float rounding, not a direction.
NEGLIGIBLE = 1e-6
#: How a saved file numbers its layers (recorded in the header as ``layer_convention``).
LAYER_CONVENTION = ("block: 0-based block index; at resid_post layer L is the output of block L, at resid_pre its "
                    "input (= the output of block L-1)")


@dataclass(frozen=True)
class SteeringVector:
    """Direction(s) to add at ``site`` of each layer in ``layers``.

    Attributes:
        vectors: ``[n_layers_used, d]`` float32 on the CPU; row ``i`` belongs to
            block ``layers[i]``. Not normalised: the mean-difference builder
            keeps the natural norm (adding it moves one class's mean onto the
            other's). :attr:`directions` gives unit rows.
        layers: block indices, ascending, distinct.
        site: activation site (see :data:`interp.SITES`) the vector lives at.
        scale: default multiplier used by :func:`steering.add`; any finite real scalar (a Python, numpy or
            0-d tensor number), stored as a float.
        meta: JSON-serialisable provenance (model, dataset, method, ...). Keys the toolkit reads:
            ``applied_positions`` (where the vector is meant to be added, default ``"all"``; see
            :attr:`applied_positions`), ``sign`` (overrides :attr:`sign`), ``model_identity`` (the model it
            was made for, :func:`model_identity`; checked by :func:`load_vector` given a model).

    ``layers`` may be one int for a one-row vector.

    Raises:
        ValueError: ``vectors`` not ``[layer, d]``, no layers, a number of rows other than of layers,
            repeated or negative layers, an unknown site, NaN or inf in ``vectors``, a ``scale`` that is not
            a finite number, or ``meta`` that is not JSON-serialisable.
    """

    vectors: Float[torch.Tensor, "layer d"]
    layers: tuple[int, ...]
    site: str = "resid_pre"
    scale: float = 1.0
    meta: dict = field(default_factory=dict)

    def __post_init__(self):
        v = torch.as_tensor(self.vectors)
        if v.ndim == 1:
            v = v[None]
        if v.ndim != 2:
            raise ValueError(f"vectors must be [layer, d], got shape {tuple(v.shape)}")
        raw = self.layers
        if isinstance(raw, numbers.Integral) or (isinstance(raw, torch.Tensor) and raw.ndim == 0):
            raw = (raw,)  # one layer given as an int
        layers = tuple(int(layer) for layer in raw)
        if not layers:
            raise ValueError(f"a steering vector needs at least one layer; got layers=() and vectors of shape "
                             f"{tuple(v.shape)}")
        if len(layers) != v.shape[0]:
            raise ValueError(f"{v.shape[0]} vector(s) for {len(layers)} layer(s) {layers}")
        if len(set(layers)) != len(layers) or any(layer < 0 for layer in layers):
            raise ValueError(f"layers must be distinct non-negative block indices, got {layers}: a steering vector "
                             "is saved and applied to models of any depth, so it names blocks from the first "
                             "(write n_layers - 1 for the last block; collect and Activations.layer take -1)")
        if self.site not in SITES:
            raise ValueError(f"unknown site {self.site!r}; known sites: {', '.join(SITES)}")
        if not torch.isfinite(v).all():
            raise ValueError("steering vector contains NaN or inf")
        scale = _scale(self.scale)
        try:
            json.dumps(self.meta)
        except TypeError as e:
            raise ValueError(f"meta must be JSON-serialisable: {e}") from None
        order = sorted(range(len(layers)), key=layers.__getitem__)
        v32 = v.detach().to("cpu", torch.float32)
        if not torch.isfinite(v32).all():
            raise ValueError(f"steering vector overflows float32 (largest entry {float(v.abs().max()):.3g}); "
                             "rescale it")
        object.__setattr__(self, "vectors", v32[order].contiguous())
        object.__setattr__(self, "layers", tuple(layers[i] for i in order))
        object.__setattr__(self, "scale", scale)

    # ------------------------------------------------------------------ access
    @property
    def d(self) -> int:
        """Width of the vectors."""
        return int(self.vectors.shape[1])

    @property
    def directions(self) -> Float[torch.Tensor, "layer d"]:
        """Unit-norm rows of :attr:`vectors`."""
        return self.vectors / self.vectors.norm(dim=-1, keepdim=True).clamp_min(1e-12)

    def at(self, layer: int) -> Float[torch.Tensor, " d"]:
        """The vector of block ``layer``."""
        if layer not in self.layers:
            raise KeyError(f"no vector for layer {layer}; this vector has layers {list(self.layers)}")
        return self.vectors[self.layers.index(layer)]

    @property
    def applied_positions(self):
        """Where the vector is meant to be added: ``meta["applied_positions"]`` (a position spec of
        :class:`steering.Add`, e.g. ``"last"`` or ``[-1, "generated"]``), ``"all"`` when the meta does not say.

        Only recorded, never enforced: :class:`steering.Add` takes its own ``positions``. llama.cpp adds a
        control vector at every position, so :meth:`export_gguf` warns about any other policy."""
        return self.meta.get("applied_positions", "all")

    @property
    def sign(self) -> str:
        """What adding the vector with a positive scale moves toward: ``meta["sign"]`` when set, else read
        from how it was built (``meta["method"]``)."""
        if "sign" in self.meta:
            return str(self.meta["sign"])
        method = str(self.meta.get("method", ""))
        if method == "mean_difference" or "difference of means" in method:
            return "mean(positive) - mean(negative): a positive scale moves activations toward the positive set"
        if method == "pca_diff":
            return "signed so the positive set projects higher: a positive scale moves toward it"
        if method.startswith("probe:"):
            return "the probe's direction toward its positive class (label 1)"
        if method == "random":
            return "a random direction: its sign means nothing"
        return "as stored: a positive scale adds the rows as they are"

    def with_model(self, model) -> SteeringVector:
        """The same vector with ``meta["model_identity"]`` set to :func:`model_identity` of ``model`` (the
        model it is meant for; :func:`load_vector` given another model then refuses it).

        ``model``: a booted model or the path of its ``.gguf`` file (:func:`model_identity`).

        Raises:
            ValueError: the vector does not fit the model (width, or a layer beyond its last block).
        """
        unbound = {k: v for k, v in self.meta.items() if k != "model_identity"}
        check_model(replace(self, meta=unbound), model, "the vector")
        return replace(self, meta={**unbound, "model_identity": model_identity(model)})

    def export_gguf(self, path: str | os.PathLike, model=None, *, model_hint: str | None = None) -> Path:
        """Write a llama.cpp control vector (GGUF) of this vector with its scale baked in; see
        :func:`steering.gguf.export_gguf` for the layer mapping, what is refused and why."""
        from .gguf import export_gguf

        return export_gguf(self, path, model=model, model_hint=model_hint)

    def select(self, layers: int | Sequence[int]) -> SteeringVector:
        """The same vector restricted to some of its layers.

        Raises:
            KeyError: a layer this vector has no row for.
            ValueError: no layers.
        """
        layers = [layers] if isinstance(layers, int) else list(layers)
        if not layers:
            raise ValueError(f"select needs at least one layer; this vector has layers {list(self.layers)}")
        rows = torch.stack([self.at(layer) for layer in layers])
        return replace(self, vectors=rows, layers=tuple(layers))

    def with_scale(self, scale: float) -> SteeringVector:
        """The same vector with another default ``scale``.

        Raises:
            ValueError: a ``scale`` that is not a finite real number.
        """
        return replace(self, scale=scale)

    def normalized(self) -> SteeringVector:
        """Unit-norm rows (for ablation, or when ``scale`` should be in activation units)."""
        return replace(self, vectors=self.directions)

    def __repr__(self) -> str:
        norms = ", ".join(f"{n:.3g}" for n in self.vectors.norm(dim=-1).tolist()[:6])
        more = ", ..." if len(self.layers) > 6 else ""
        return (f"SteeringVector(site={self.site!r}, layers={list(self.layers)}, d={self.d}, "
                f"scale={self.scale:g}, norms=[{norms}{more}], meta={self.meta!r})")

    # -------------------------------------------------------------- builders
    @classmethod
    def from_directions(cls, directions, layers: Sequence[int], site: str = "resid_pre", *, scale: float = 1.0,
                        normalize: bool = True, meta: Mapping | None = None) -> SteeringVector:
        """From any ``[layer, d]`` stack (e.g. probe directions), unit rows by default."""
        v = torch.as_tensor(directions).float()
        if v.ndim == 1:
            v = v[None]
        if normalize:
            v = v / v.norm(dim=-1, keepdim=True).clamp_min(1e-12)
        return cls(v, tuple(layers), site, scale, dict(meta or {}, method=(meta or {}).get("method", "directions")))

    @classmethod
    def from_mean_difference(cls, positive, negative, layers: Sequence[int], site: str = "resid_pre", *,
                             scale: float = 1.0, meta: Mapping | None = None) -> SteeringVector:
        """``mean(positive) - mean(negative)`` per layer.

        Args:
            positive: ``[n_pos, layer, d]`` activations of the prompts to steer toward.
            negative: ``[n_neg, layer, d]``.

        ``meta["relative_norm"]`` (``{layer: value}``) is each layer's ``||difference||`` over the mean
        activation norm of the two sets; below :data:`NEGLIGIBLE` the difference is float rounding, a
        warning says so, and :class:`~steering.Ablate`/:class:`~steering.Clamp` refuse that layer's
        direction (:class:`~steering.Add` warns).

        Raises:
            ValueError: empty or non-finite activations, sets differing in layer/width, or a number of
                ``layers`` other than the activations'.
        """
        pos, neg = _rows(positive, "positive"), _rows(negative, "negative")
        if pos.shape[1:] != neg.shape[1:]:
            raise ValueError(f"positive {tuple(pos.shape)} and negative {tuple(neg.shape)} differ in layer/width")
        diff = pos.double().mean(0) - neg.double().mean(0)
        # each layer's difference relative to the activations' mean norm there: ~1e-8 is float rounding
        size = 0.5 * (pos.double().norm(dim=-1).mean(0) + neg.double().norm(dim=-1).mean(0))
        rel = torch.where(size > 0, diff.norm(dim=-1) / size.clamp_min(1e-300), torch.zeros_like(size))
        layers = tuple(int(layer) for layer in layers)
        if len(layers) != diff.shape[0]:
            raise ValueError(f"{diff.shape[0]} layer(s) of activations for {len(layers)} layer(s) {layers}")
        info = {"method": "mean_difference", "n_positive": int(pos.shape[0]), "n_negative": int(neg.shape[0]),
                "relative_norm": {str(layer): float(r) for layer, r in zip(layers, rel.tolist())}}
        negligible = [layer for layer, r in zip(layers, rel.tolist()) if r < NEGLIGIBLE]
        if negligible:
            warnings.warn(f"the difference of means at layer(s) {negligible} is below {NEGLIGIBLE:g} of the "
                          "activations' norm (float rounding: the two sets' means agree, e.g. identical prompt sets); "
                          "its direction is noise, and ablating or clamping it is refused", stacklevel=2)
        return cls(diff.float(), layers, site, scale, {**info, **(meta or {})})

    @classmethod
    def from_pca(cls, positive, negative, layers: Sequence[int], site: str = "resid_pre", *,
                 scale: float = 1.0, center: bool = False, meta: Mapping | None = None) -> SteeringVector:
        """Top principal component of the paired differences ``d_i = positive[i] - negative[i]``, per layer.

        ``center=False`` (default): the top right singular vector of the uncentred ``[n, d]`` differences,
        which is the top principal component of the differences taken in both orders ``{d_i, -d_i}``
        (a set of mean zero). Representation engineering (Zou et al. 2023, "Representation Engineering",
        §3.1 and its reference code) shuffles each pair's order before a centred PCA for this reason; taking
        both orders gives the same component without a random draw. A concept that every pair shares
        (``d_i = c + noise``) is that component. ``center=True``: centred PCA of the ``d_i`` as repeng's
        ``pca_diff`` does (scikit-learn's PCA centres), which subtracts the mean difference first and so
        keeps only how the pairs *differ* in their difference: with a shared concept it returns noise.

        Each component is signed so that positive rows project above negative rows on average, and rows
        are unit norm. ``meta["explained"]``: the component's share of the (uncentred or centred) sum of
        squares of the differences, per layer.

        Args:
            positive, negative: ``[n, layer, d]`` (or ``[n, d]``) activations, row ``i`` of each a pair.

        Raises:
            ValueError: shapes differ, fewer than 2 pairs, NaN/inf, or a layer whose (centred) differences
                are all zero: no direction is defined there (identical pairs; with ``center=True``, pairs
                that all differ by the same vector).
        """
        pos, neg = _rows(positive, "positive"), _rows(negative, "negative")
        if pos.shape != neg.shape:
            raise ValueError(f"paired sets must have the same shape, got {tuple(pos.shape)} and {tuple(neg.shape)}")
        if pos.shape[0] < 2:
            raise ValueError("the principal component of paired differences needs at least 2 pairs")
        diffs = (pos - neg).double().transpose(0, 1)  # [layer, n, d]
        data = diffs - diffs.mean(1, keepdim=True) if center else diffs
        raw = diffs.pow(2).sum((1, 2))  # [layer] sums of squares
        total = data.pow(2).sum((1, 2)) if center else raw
        identical = (raw == 0).nonzero().flatten().tolist()
        if identical:
            raise ValueError(f"no principal component at layer position(s) {identical}: positive and negative "
                             "rows are identical there")
        same = (total <= 1e-24 * raw).nonzero().flatten().tolist()  # centring left only float64 rounding
        if same:
            raise ValueError(f"no principal component at layer position(s) {same}: every pair differs by the "
                             "same vector, so the centred differences are zero; use center=False or "
                             "from_mean_difference")
        _, s, vh = torch.linalg.svd(data, full_matrices=False)
        comp = vh[:, 0]  # [layer, d]
        sign = torch.sign(torch.einsum("lnd,ld->l", diffs, comp)).clamp_min(0) * 2 - 1
        comp = comp * sign[:, None]
        explained = (s[:, 0] ** 2 / total).tolist()
        info = {"method": "pca_diff", "centred": bool(center), "n_pairs": int(pos.shape[0]), "explained": explained}
        return cls(comp.float(), tuple(layers), site, scale, {**info, **(meta or {})})

    @classmethod
    def from_probe(cls, probe, layers: int | Sequence[int], site: str = "resid_post", *, scale: float = 1.0,
                   meta: Mapping | None = None) -> SteeringVector:
        """From a fitted probe: a ``probes`` estimator (``direction_``, one layer) or a per-layer
        ``probes.LayerFit`` (``direction`` ``[layer, d]``, one row per entry of ``layers``). Unit rows."""
        direction = getattr(probe, "direction_", None)
        if direction is None:
            direction = getattr(probe, "direction", None)
        if direction is None:
            raise TypeError(f"{type(probe).__name__} has no direction_ (fit it first) or direction")
        layers = [layers] if isinstance(layers, int) else list(layers)
        info = {"method": f"probe:{getattr(probe, 'method', type(probe).__name__)}"}
        return cls.from_directions(torch.as_tensor(direction).float(), layers, site, scale=scale,
                                   meta={**info, **(meta or {})})

    @classmethod
    def from_prompts(cls, model, positive, negative, *, layers: Sequence[int] | None = None,
                     site: str = "resid_pre", positions="last", method: str = "mean_difference",
                     scale: float = 1.0, batch_size: int = 32, meta: Mapping | None = None) -> SteeringVector:
        """Collect ``site`` activations of two prompt sets at ``positions`` and build the vector.

        ``method``: ``"mean_difference"`` (any two sets) or ``"pca"`` (paired sets:
        ``positive[i]`` and ``negative[i]`` differ in the concept only). ``layers``:
        default every layer. Prompts are used as given (format them first with
        :meth:`interp.ModelPair.format` for chat): lists of texts or
        :class:`interp.PromptSet`. ``meta["model_identity"]`` records the model
        (:func:`model_identity`; hashing its weights costs about a second per GB).

        Raises:
            TypeError: ``positive`` or ``negative`` given as one string (it would be read as one prompt
                per character).
            ValueError: an unknown ``method``; and as :func:`interp.collect` and the builders.
        """
        from interp import collect
        from interp.sites import check_layers

        for name, p in (("positive", positive), ("negative", negative)):
            if isinstance(p, (str, bytes)):
                raise TypeError(f"{name} must be a list of prompt texts (or a PromptSet), not one string; wrap a "
                                f"single one in a list: [{p[:40]!r}]")
        builders = {"mean_difference": cls.from_mean_difference, "pca": cls.from_pca}
        if method not in builders:
            raise ValueError(f"method must be one of {sorted(builders)}, got {method!r}")
        layers = check_layers(layers, int(model.cfg.n_layers))
        acts = [collect(model, p if hasattr(p, "texts") else list(p), site, layers=layers, positions=positions,
                        batch_size=batch_size, progress=False)[site] for p in (positive, negative)]
        info = {"model": (getattr(model, "interp_source", None) or {}).get("name", ""), "positions": str(positions),
                "model_identity": model_identity(model)}
        return builders[method](acts[0], acts[1], layers, site, scale=scale, meta={**info, **(meta or {})})

    # ------------------------------------------------------------------ I/O
    def save(self, path: str | os.PathLike, model=None) -> Path:
        """Write one safetensors file (tensors + JSON metadata header); atomic.

        ``path`` gets the suffix ``.safetensors`` when it has another or none (``"refusal"`` is written
        as ``refusal.safetensors``, which :func:`load_vector` and ``interp steer --name`` find); missing
        parent folders are created. Returns the path written.

        The header (``interp`` metadata key, JSON) holds ``format``, ``site``, ``scale``, ``layers``, ``meta``
        and, as plain records for readers of the file, ``layer_convention`` (:data:`LAYER_CONVENTION`),
        ``positions`` (:attr:`applied_positions`), ``sign`` (:attr:`sign`) and ``model``
        (``meta["model_identity"]``, when known). ``model``: record that model's identity first
        (:meth:`with_model`).

        Raises:
            ValueError: an empty path, a path that is an existing folder, or a ``model`` the vector does not fit.
        """
        if not str(path).strip():
            raise ValueError("path is empty: give a file name such as 'refusal.safetensors'")
        path = Path(path)
        if path.is_dir():
            raise ValueError(f"{path} is a folder: give a file name inside it, e.g. {path / 'vector.safetensors'}")
        if path.suffix != ".safetensors":
            path = path.with_name(path.name + ".safetensors")
        vec = self if model is None else self.with_model(model)
        header = {"format": _FORMAT, "site": vec.site, "scale": vec.scale, "layers": list(vec.layers),
                  "meta": vec.meta, "layer_convention": LAYER_CONVENTION, "positions": vec.applied_positions,
                  "sign": vec.sign}
        if "model_identity" in vec.meta:
            header["model"] = vec.meta["model_identity"]
        save_safetensors(path, {"vectors": vec.vectors, "layers": torch.tensor(vec.layers, dtype=torch.int64)},
                         metadata={"interp": json.dumps(header)})
        return path

    @classmethod
    def load(cls, path: str | os.PathLike, model=None) -> SteeringVector:
        """:func:`load_vector`."""
        return load_vector(path, model=model)


def _scale(value) -> float:
    """``value`` as a float: any finite real scalar (Python, numpy, or a one-element tensor).

    Raises:
        ValueError: NaN, inf, a string, a complex number, or an array of several values.
    """
    x = math.nan
    if not isinstance(value, (str, bytes, complex)) and not (isinstance(value, torch.Tensor) and value.numel() != 1):
        try:
            x = float(value)
        except (TypeError, ValueError):
            pass
    if not math.isfinite(x):
        shape = f" of shape {tuple(value.shape)}" if isinstance(value, torch.Tensor) and value.ndim else ""
        raise ValueError(f"scale must be a finite number, got {value!r}{shape}")
    return x


def _rows(x, name: str) -> torch.Tensor:
    x = torch.as_tensor(x)
    if x.ndim == 2:
        x = x[:, None]
    if x.ndim != 3 or x.shape[0] == 0:
        raise ValueError(f"{name} must be a non-empty [n, layer, d] tensor, got shape {tuple(x.shape)}")
    if not torch.isfinite(x).all():
        raise ValueError(f"{name} activations contain NaN or inf")
    return x


def load_vector(path: str | os.PathLike, model=None) -> SteeringVector:
    """Read a vector written by :meth:`SteeringVector.save` (safetensors), or a llama.cpp control vector
    (a ``.gguf`` file: :func:`steering.gguf.load_gguf`, which documents the layer conventions of repeng's and
    llama.cpp's files).

    ``path`` may leave out the ``.safetensors`` suffix, as :meth:`SteeringVector.save` adds it.
    ``model`` (optional): the model the vector is to be used with; the vector must fit it (width of its site,
    layers within its blocks) and, where the file records the model it was made for
    (``meta["model_identity"]``), be that model: same layer count, width, architecture and weights
    (:func:`model_identity`).

    Raises ``FileNotFoundError`` for a missing file and ``ValueError`` for a folder, a file that is not a
    safetensors steering vector, or a ``model`` it does not fit or was not made for.
    """
    from safetensors import SafetensorError, safe_open

    path = Path(path)
    if path.suffix.lower() == ".gguf":
        from .gguf import load_gguf

        return load_gguf(path, model=model)
    if path.is_dir():
        names = sorted(p.name for p in path.glob("*.safetensors"))
        raise ValueError(f"{path} is a folder, not a steering vector file; the vectors in it: "
                         f"{', '.join(names) or 'none'}")
    if not path.is_file() and path.suffix != ".safetensors" and path.with_name(path.name + ".safetensors").is_file():
        path = path.with_name(path.name + ".safetensors")  # what save("name") wrote
    if not path.is_file():
        raise FileNotFoundError(f"no steering vector file at {path}")
    try:
        with safe_open(str(path), framework="pt") as f:
            header = json.loads((f.metadata() or {}).get("interp", "null"))
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except (SafetensorError, OSError, json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{path} is not a safetensors steering vector: {e}") from None
    if not isinstance(header, dict) or header.get("format") != _FORMAT or "vectors" not in tensors:
        raise ValueError(f"{path} is a safetensors file but not a steering vector (no {_FORMAT!r} header)")
    layers = tuple(int(x) for x in tensors["layers"].tolist())
    if layers != tuple(header["layers"]):
        raise ValueError(f"{path}: layers in the header {header['layers']} and tensor {list(layers)} disagree")
    vector = SteeringVector(tensors["vectors"], layers, header["site"], header["scale"], header.get("meta", {}))
    if model is not None:
        check_model(vector, model, str(path))
    return vector


# ---------------------------------------------------------------------------------------------- model identity

#: Weight hashes by model, with the (storage, version) of each parameter they were computed from: an in-place
#: edit of a weight bumps its version counter, so a stale hash is never returned.
_HASHES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
#: Dtypes whose weights round to the same bfloat16 values as the float32 checkpoint they were loaded from.
_SAME_HASH_DTYPES = {"float32", "bfloat16"}


def _weights_module(model):
    """The Hugging Face model inside a TransformerBridge (its parameters carry the checkpoint's names), else
    ``model``."""
    inner = getattr(model, "original_model", None)
    return model if inner is None else inner


def weights_sha256(model) -> str:
    """sha256 of a model's weights: every parameter, sorted by name, as ``name``, shape and its values rounded
    to bfloat16 (so a float32 and a bfloat16 load of the same checkpoint hash alike; a float16 load does not).

    Memoised per model object while no parameter is replaced or edited in place. Cost: about a second per GB
    of float32 weights on a CPU.
    """
    params = sorted(_weights_module(model).named_parameters(), key=lambda kv: kv[0])
    key = tuple((name, p.data_ptr(), p._version) for name, p in params)
    memo = _HASHES.get(model)
    if memo is not None and memo[0] == key:
        return memo[1]
    h = hashlib.sha256()
    with torch.no_grad():
        for name, p in params:
            h.update(f"{name}:{tuple(p.shape)};".encode())
            h.update(p.detach().to("cpu", torch.bfloat16).contiguous().view(torch.int16).numpy().tobytes())
    digest = h.hexdigest()
    try:
        _HASHES[model] = (key, digest)
    except TypeError:  # not weak-referenceable: no memo
        pass
    return digest


def model_identity(model) -> dict:
    """What a saved vector records of the model it was made for, and what :func:`load_vector` and
    :meth:`SteeringVector.export_gguf` compare against.

    ``model``: a booted model (:func:`interp.load_model`), or the path of a llama.cpp model file (``.gguf``;
    only its header is read, and the file hashed).

    Returns ``{"name", "architecture", "n_layers", "d_model", ...}``: ``architecture`` is the llama.cpp
    spelling (``general.architecture`` of a GGUF model, e.g. ``"llama"`` for SmolLM2, ``"gemma3"`` for
    Gemma 3; None where unknown). A booted model adds ``hf_architecture``, ``weights_dtype`` and
    ``weights_sha256`` (:func:`weights_sha256`), and ``gguf_sha256`` when it was booted from a GGUF file; a
    GGUF path gives ``gguf_sha256`` (sha256 of the file's bytes).

    Raises:
        ValueError: a path that is not a GGUF model file, or an object that is not a model.
    """
    from .gguf import llama_cpp_architecture

    if isinstance(model, (str, os.PathLike)):
        from .gguf import gguf_model_identity

        return gguf_model_identity(model)
    cfg = getattr(model, "cfg", None)
    if cfg is None or not hasattr(cfg, "n_layers"):
        raise ValueError(f"expected a booted model (interp.load_model) or a .gguf model file, got "
                         f"{type(model).__name__}")
    source = getattr(model, "interp_source", None) or {}
    first = next(iter(_weights_module(model).parameters()), None)
    out = {"name": str(source.get("name", "")), "architecture": llama_cpp_architecture(model),
           "hf_architecture": getattr(cfg, "architecture", None), "n_layers": int(cfg.n_layers),
           "d_model": int(cfg.d_model),
           "weights_dtype": None if first is None else str(first.dtype).removeprefix("torch."),
           "weights_sha256": weights_sha256(model)}
    if "gguf" in source:
        out["gguf_sha256"] = source["gguf"].get("sha256")
    return out


def _check_fits(vector: SteeringVector, model) -> None:
    """Refuse a booted ``model`` the vector cannot be applied to: its site's width, or a layer past the last block."""
    from interp.sites import site_width

    width = site_width(model, vector.site)
    if vector.d != width:
        raise ValueError(f"the vector has width {vector.d} but the model's {vector.site} has width {width}")
    n_layers = int(model.cfg.n_layers)
    beyond = [layer for layer in vector.layers if layer >= n_layers]
    if beyond:
        raise ValueError(f"the vector has layer(s) {beyond} but the model has {n_layers} blocks (0..{n_layers - 1})")


_HASHES_NAMED = (("weights_sha256", "a weights sha256"), ("gguf_sha256", "a GGUF file sha256"))


def compare_identity(recorded: Mapping, actual: Mapping) -> list[str]:
    """The differences between a recorded :func:`model_identity` and a model's, as sentences (empty: the
    same model as far as both records tell). Fields missing from either side are not compared; the weight
    hashes only where both dtypes round alike (float32/bfloat16, or the same dtype).

    Warns when no hash can be compared although one side has one (e.g. a vector made on a booted model, whose
    weights hash, checked against a ``.gguf`` model file, whose file hash: the hashes are of different things),
    or the dtypes round differently: then only the layer count, width and architecture were checked.
    """
    diffs = []
    for key, what in (("n_layers", "layers"), ("d_model", "width d_model"), ("architecture", "architecture")):
        a, b = recorded.get(key), actual.get(key)
        if a is not None and b is not None and a != b:
            diffs.append(f"{what} {a!r} recorded, {b!r} given")
    a, b = recorded.get("weights_sha256"), actual.get("weights_sha256")
    da, db = recorded.get("weights_dtype"), actual.get("weights_dtype")
    if a and b and a != b:
        if da == db or {da, db} <= _SAME_HASH_DTYPES:
            diffs.append(f"weights sha256 {a[:12]}... recorded, {b[:12]}... given")
        else:
            warnings.warn(f"the vector was made with {da} weights and the model holds {db} ones, whose bfloat16 "
                          "roundings can differ: the weight hashes are not compared", stacklevel=3)
    a, b = recorded.get("gguf_sha256"), actual.get("gguf_sha256")
    if a and b and a != b:
        diffs.append(f"GGUF file sha256 {a[:12]}... recorded, {b[:12]}... given")
    compared = any(recorded.get(key) and actual.get(key) for key, _ in _HASHES_NAMED)
    if not compared and not diffs:
        have = [(side, what) for side, ident in (("the vector records", recorded), ("the model given has", actual))
                for key, what in _HASHES_NAMED if ident.get(key)]
        if have:
            said = " and ".join(f"{side} {what}" for side, what in have)
            warnings.warn(f"the model cannot be checked by its weights: {said}, and the other side no hash of the "
                          "same kind; only the layer count, width and architecture were compared (record the "
                          "model the vector is for with vector.with_model(model), or save(path, model=...), "
                          "using the same kind of model: booted, or its .gguf file)", stacklevel=3)
    return diffs


def check_model(vector: SteeringVector, model, where: str = "the vector") -> None:
    """Refuse ``model`` (booted, or a ``.gguf`` model path) when ``vector`` does not fit it or records another
    model (:func:`compare_identity`).

    Raises:
        ValueError: naming every difference.
    """
    if isinstance(model, (str, os.PathLike)):
        actual = model_identity(model)
        problems = []
        if vector.site not in ("mlp_pre", "mlp_post") and vector.d != actual["d_model"]:
            problems.append(f"the vector has width {vector.d} but the model's d_model is {actual['d_model']}")
        beyond = [layer for layer in vector.layers if layer >= actual["n_layers"]]
        if beyond:
            problems.append(f"the vector has layer(s) {beyond} but the model has {actual['n_layers']} blocks")
        if problems:
            raise ValueError(f"{where} does not fit {model}: {'; '.join(problems)}")
    else:
        try:
            _check_fits(vector, model)
        except ValueError as e:
            raise ValueError(f"{where}: {e}") from None
        actual = None
    recorded = vector.meta.get("model_identity")
    if not isinstance(recorded, Mapping):
        return
    actual = actual or model_identity(model)
    diffs = compare_identity(recorded, actual)
    if diffs:
        raise ValueError(f"{where} was made for another model ({recorded.get('name') or 'unnamed'}) than "
                         f"{actual.get('name') or 'the one given'}: {'; '.join(diffs)}")
