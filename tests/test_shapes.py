"""Run-time checks of the jaxtyping shape annotations on the public tensor API."""

import pytest
import torch
from beartype import beartype
from jaxtyping import Float, TypeCheckError, jaxtyped

import interp
from interp.activations import Activations
from interp.tokens import encode, pad_batch

checked = jaxtyped(typechecker=beartype)


def test_annotated_functions_return_their_declared_shapes(tiny_pairs):
    model = tiny_pairs["llama"].base
    acts = interp.collect(model, ["One two.", "Three four five six."], ["resid_post", "mlp_post"], progress=False)
    for site in acts.sites:
        x = checked(Activations.__getitem__)(acts, site)
        assert x.shape[:2] == (2, 3)
        checked(Activations.layer)(acts, site, 1)
    batch = checked(pad_batch)(encode(model.interp_tokenizer, ["a b c", "d"]), pad_id=0)
    assert batch.input_ids.shape == batch.attention_mask.shape


def test_a_wrong_shape_is_caught():
    @checked
    def rows(x: Float[torch.Tensor, "n_samples layer d"]) -> Float[torch.Tensor, "n_samples d"]:
        return x[0]  # wrong: drops the sample axis instead of the layer axis

    with pytest.raises(TypeCheckError):
        rows(torch.zeros(4, 3, 2))
