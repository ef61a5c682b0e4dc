"""calibrate_scale reaches the KL it is asked for."""

import pytest
import torch

from steering import Add, SteeringVector, calibrate_scale
from steering.metrics import kl_divergence


@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_calibrated_scale_reaches_the_target_kl(tiny_pairs, sign):
    model = tiny_pairs["llama"].post
    g = torch.Generator().manual_seed(0)
    vec = SteeringVector(torch.randn(1, int(model.cfg.d_mlp), generator=g), (1,), "mlp_post")
    cal = calibrate_scale(model, vec, "The cat sat", 0.3, sign=sign)
    assert (cal.scale > 0) == (sign > 0) and cal.site == "mlp_post"
    torch.testing.assert_close(cal.vectors.norm(dim=-1), torch.ones(1))
    kl = float(kl_divergence(model, ["The cat sat"], Add(cal)).mean())
    assert kl == pytest.approx(0.3, rel=0.05) and cal.meta["calibrated_kl"] == pytest.approx(kl, rel=1e-4)


def test_calibration_refuses_a_vector_that_moves_nothing(tiny_pairs):
    model = tiny_pairs["llama"].post
    d = int(model.cfg.d_model)
    with pytest.raises(ValueError, match="target_kl must be > 0"):
        calibrate_scale(model, SteeringVector(torch.ones(1, d), (0,)), "Hi", 0.0)
    # a target the vector cannot reach within max_steps doublings of its scale
    with pytest.raises(ValueError, match="moves the next-token KL only to"):
        calibrate_scale(model, SteeringVector(torch.ones(1, d), (0,)), "Hi", 1e6, max_steps=3)


def test_calibration_stops_where_a_normalization_caps_the_kl(tiny_pairs):
    """Gemma-2's post-feedforward RMSNorm bounds what mlp_post can add: the KL levels off and the doubling stops."""
    model = tiny_pairs["gemma2"].post
    g = torch.Generator().manual_seed(0)
    vec = SteeringVector(torch.randn(1, int(model.cfg.d_mlp), generator=g), (1,), "mlp_post")
    unit = vec.normalized()
    ceiling = float(kl_divergence(model, ["The cat sat"], Add(unit, scale=1e6)).mean())
    with pytest.raises(ValueError, match=r"the next-token KL levels off at (\S+) < target") as err:
        calibrate_scale(model, vec, "The cat sat", 100 * ceiling + 1)
    level = float(err.value.args[0].split("levels off at ")[1].split(" ")[0])
    assert level == pytest.approx(ceiling, rel=0.1)
    assert "up to " in str(err.value) and "2^" not in str(err.value)
    # a reachable target under the same cap is still calibrated
    cal = calibrate_scale(model, vec, "The cat sat", ceiling / 4)
    assert cal.meta["calibrated_kl"] == pytest.approx(ceiling / 4, rel=0.05)
