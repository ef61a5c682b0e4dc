"""Choose a steering scale by its cost: bisection on the next-token KL it causes.

Shafran, Geiger & Geva (2025) steer with an SNMF feature by adding ``α`` times
the unit feature, with ``α`` set so that the next-token distribution on a
neutral prompt moves by a fixed KL. :func:`calibrate_scale` does this for any
:class:`SteeringVector`: it doubles ``α`` until the KL passes the target, then
bisects. Where a normalization after the steered site bounds the vector's
effect (Gemma's post-feedforward RMSNorm caps what ``mlp_post`` can add to the
residual stream), the KL levels off below a high target however large ``α``
grows; the doubling stops once the KL has stopped growing and says so.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence

from interp._checks import check_int
from interp.tokens import Tokenized, as_tokenized

from .interventions import Add
from .metrics import kl_divergence, next_token_logprobs
from .vector import SteeringVector

__all__ = ["calibrate_scale"]


def _number(x) -> float:
    """``x`` as a float, NaN for what is not a real number (so every range check on it fails)."""
    if isinstance(x, (str, bytes)):
        return math.nan
    try:
        return float(x)
    except (TypeError, ValueError):
        return math.nan


def calibrate_scale(model, vector: SteeringVector, prompts: Sequence[str] | str | Tokenized, target_kl: float, *,
                    sign: float = 1.0, positions="all", rtol: float = 0.05, max_steps: int = 40,
                    start: float = 1.0, patience: int = 3) -> SteeringVector:
    """The vector (unit rows) with ``scale = sign * α`` such that adding it gives mean next-token
    KL ≈ ``target_kl`` (within ``rtol``) on ``prompts``.

    ``start`` is the first ``α`` tried (> 0; the direction goes in ``sign``), ``max_steps`` bounds both the
    doublings and the bisection steps, ``patience`` the doublings in a row that may leave the KL flat.

    Raises:
        ValueError: if no finite ``α`` up to ``start * 2**max_steps`` reaches the target (the vector does
            not move this model's predictions), or once ``patience`` doublings in a row have raised the KL
            by less than ``rtol`` of itself: it has levelled off below the target (the message gives the
            level it reached). Also for a vector that is zero (or float rounding, by its
            ``meta["relative_norm"]``) at a layer, and for arguments out of range: ``target_kl``, ``start``
            or ``rtol`` not a finite number > 0, ``sign`` zero or not finite, ``max_steps`` or ``patience``
            below 1.
        TypeError: ``max_steps`` or ``patience`` not an int.

    Warns:
        UserWarning: when ``max_steps`` bisection steps end with the KL still outside ``rtol`` of the
            target (e.g. a target below what float rounding of the steered pass can resolve); the vector
            is returned as the last step left it, and the warning and ``meta["calibrated_kl"]`` give the
            KL it reaches.
    """
    if isinstance(prompts, str):
        prompts = [prompts]
    if not _number(target_kl) > 0:
        raise ValueError(f"target_kl must be > 0, got {target_kl}")
    if not math.isfinite(target_kl):
        raise ValueError(f"target_kl must be a finite number > 0 (a next-token KL in nats), got {target_kl}")
    if not (_number(start) > 0 and math.isfinite(start)):
        raise ValueError(f"start must be a finite number > 0 (the first scale tried; the direction goes in sign=), "
                         f"got {start}")
    if not (_number(sign) != 0 and math.isfinite(sign)):
        raise ValueError(f"sign must be a finite nonzero number (+1 adds the vector, -1 subtracts it), got {sign}")
    if not (_number(rtol) > 0 and math.isfinite(rtol)):
        raise ValueError(f"rtol must be a finite number > 0 (the relative tolerance on the KL, e.g. 0.05), "
                         f"got {rtol}")
    check_int("max_steps", max_steps)
    check_int("patience", patience)
    from .interventions import _relative_norm
    from .vector import NEGLIGIBLE

    dead = [layer for layer, row in zip(vector.layers, vector.vectors)
            if not float(row.norm()) > 0 or (_relative_norm(vector, layer) or 1.0) < NEGLIGIBLE]
    if dead:
        raise ValueError(f"the vector is zero or float rounding at layer(s) {dead} (e.g. a difference of means of "
                         "identical prompt sets): its direction is noise, so no scale is worth calibrating; check "
                         "how it was built")
    unit = vector.normalized()
    prompts = as_tokenized(model, prompts)  # once, for every scale tried
    clean = next_token_logprobs(model, prompts)

    def kl(alpha: float) -> float:
        return float(kl_divergence(model, prompts, Add(unit, scale=sign * alpha, positions=positions),
                                   clean=clean).mean())

    lo, hi = 0.0, float(start)
    k_hi = kl(hi)
    steps = flat = 0
    while k_hi < target_kl:
        lo, hi, k_lo = hi, hi * 2, k_hi
        k_hi = kl(hi)
        steps += 1
        flat = flat + 1 if k_hi <= k_lo * (1 + rtol) else 0
        if flat >= patience:
            raise ValueError(f"the next-token KL levels off at {k_hi:.3g} < target {target_kl}: {patience} doublings "
                             f"of the scale, up to {hi:g}, raised it by less than {rtol:.0%} each (a normalization "
                             "after the steered site bounds the vector's effect)")
        if steps > max_steps:
            raise ValueError(f"adding the vector up to scale {hi:g} moves the next-token KL only to {k_hi:.3g} "
                             f"< target {target_kl}")
    alpha, k_mid = hi, k_hi
    for _ in range(max_steps):
        if abs(k_mid - target_kl) <= rtol * target_kl:
            break
        alpha = (lo + hi) / 2
        k_mid = kl(alpha)
        if k_mid < target_kl:
            lo = alpha
        else:
            hi = alpha
    if abs(k_mid - target_kl) > rtol * target_kl:
        warnings.warn(f"calibrate_scale did not reach target_kl={target_kl:g} within rtol={rtol:g} in "
                      f"max_steps={max_steps} bisection steps: the KL reached is {k_mid:.4g} at scale "
                      f"{sign * alpha:g}; the vector is returned with that scale (raise max_steps or rtol, or choose "
                      "a larger target)", stacklevel=2)
    meta = {**unit.meta, "calibrated_kl": k_mid, "target_kl": float(target_kl), "alpha": alpha}
    return SteeringVector(unit.vectors, unit.layers, unit.site, sign * alpha, meta)
