"""Hook context managers.

Every hook the toolkit attaches goes through :func:`attached`, which validates
the hook names up front and removes the hooks when the block exits, also when
its body raises. It wraps ``TransformerBridge.hooks`` (whose ``finally`` does
the removal), so hooks attached by the caller beforehand are left alone.

Hook functions follow TransformerLens' signature ``fn(activation, hook)``. A
function that only reads should return ``None``; one that edits should return a
new tensor rather than modify ``activation`` in place.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

import torch

__all__ = ["attached", "active_hooks", "forward_blocks", "recorded_blocks", "replayed_blocks", "HookFn"]

HookFn = Callable[[torch.Tensor, object], "torch.Tensor | None"]


def _check_names(model, names: Sequence[str]) -> None:
    hook_dict = model.hook_dict
    missing = [n for n in names if n not in hook_dict]
    if missing:
        blocks = sorted({n.split(".")[1] for n in hook_dict if n.startswith("blocks.")}, key=int)
        raise KeyError(
            f"hook point(s) {missing} do not exist on this model "
            f"({type(model).__name__} with blocks {blocks[0]}..{blocks[-1]}); "
            "see interp.sites.SITES for the supported sites"
        )


@contextmanager
def attached(model, fwd_hooks: Sequence[tuple[str, HookFn]]) -> Iterator[object]:
    """Attach forward hooks to ``model`` for the duration of a ``with`` block.

    Args:
        model: a ``TransformerBridge``.
        fwd_hooks: ``(hook_name, fn)`` pairs; names are checked before any hook
            is attached, so a bad name attaches nothing.

    The hooks are removed on exit, including when the body raises.
    """
    fwd_hooks = list(fwd_hooks)
    _check_names(model, [name for name, _ in fwd_hooks])
    with model.hooks(fwd_hooks=fwd_hooks):
        yield model


def forward_blocks(model, input_ids: torch.Tensor, attention_mask: torch.Tensor | None, stop_at_layer: int) -> None:
    """Run blocks ``0 .. stop_at_layer - 1`` of ``model`` on a batch and nothing above them.

    The hooks attached around the call fire as in a full forward up to that block; the
    output is discarded (read it with hooks). TransformerLens' ``stop_at_layer`` stops
    at the *entry* of block ``stop_at_layer``, so with ``stop_at_layer == n_layers`` it
    would still run the final norm and the unembedding (a fifth of a 135M model's
    FLOPs with a 49k vocabulary, for logits nobody reads). Here that case stops at
    ``ln_final.hook_in`` instead, with the same ``StopAtLayerException`` TransformerLens
    raises for its own stops (caught by the bridge's forward, which cleans up after it).

    Args:
        model: a ``TransformerBridge``.
        input_ids: ``[batch, pos]`` token ids.
        attention_mask: ``[batch, pos]`` (1 = token, 0 = padding), or None.
        stop_at_layer: number of blocks to run, ``1 .. n_layers``.

    Raises:
        ValueError: ``stop_at_layer`` outside ``1 .. n_layers``.
    """
    from transformer_lens.model_bridge.exceptions import StopAtLayerException

    n_layers = int(model.cfg.n_layers)
    if not 1 <= stop_at_layer <= n_layers:
        raise ValueError(f"stop_at_layer must be in 1..{n_layers} (n_layers), got {stop_at_layer}")
    if stop_at_layer < n_layers or "ln_final.hook_in" not in model.hook_dict:
        model(input_ids, attention_mask=attention_mask, return_type=None, stop_at_layer=stop_at_layer)
        return

    def stop(act, hook):
        raise StopAtLayerException(act)

    with attached(model, [("ln_final.hook_in", stop)]):
        model(input_ids, attention_mask=attention_mask, return_type=None)


@contextmanager
def recorded_blocks(model) -> Iterator[list[dict[int, object]]]:
    """Record what every block returns, one ``{layer: output}`` dict per forward call inside the block.

    The outputs are kept as the blocks return them to the Hugging Face layer loop (a tensor, or a tuple
    whose first element is one), after the block's own hooks, for :func:`replayed_blocks` to hand back.
    The recording hooks are PyTorch forward hooks on the blocks, removed on exit, also when the body raises.

    Yields:
        the list of per-call dicts, filled as forward calls run (a call's dict is complete when it returns).
    """
    calls: list[dict[int, object]] = []

    def record(layer):
        def fn(module, args, output):
            if layer == 0 or not calls:  # the first block opens a new forward call
                calls.append({})
            calls[-1][layer] = output
        return fn

    handles = []
    try:
        for layer, block in enumerate(model.blocks):
            handles.append(block.register_forward_hook(record(layer)))
        yield calls
    finally:
        for h in handles:
            h.remove()


@contextmanager
def replayed_blocks(model, outputs: dict[int, object], below: int) -> Iterator[object]:
    """Skip blocks ``0 .. below - 1``: each returns its recorded output instead of computing it.

    For passes that differ from a recorded one (:func:`recorded_blocks`, same inputs, same batch) only at
    or above block ``below``, e.g. a steering vector added at ``resid_pre`` of block ``below``: the blocks
    underneath would compute exactly what was recorded, so block ``below`` receives bit for bit the same
    input, at ``(n_layers - below) / n_layers`` of the blocks' cost. Nothing below ``below`` runs: no hook
    there fires and no KV cache entry is written for those layers in this call (a cache passed in is read
    only by the blocks that run).

    Args:
        model: a ``TransformerBridge``.
        outputs: ``{layer: output}`` of one recorded forward call; needs layers ``0 .. below - 1``.
        below: number of blocks to skip, ``0 .. n_layers`` (0 skips nothing).

    Raises:
        ValueError: ``below`` outside ``0 .. n_layers``.
        KeyError: a layer below ``below`` missing from ``outputs``.
    """
    n_layers = len(model.blocks)
    if not 0 <= below <= n_layers:
        raise ValueError(f"below must be in 0..{n_layers} (n_layers), got {below}")
    missing = [layer for layer in range(below) if layer not in outputs]
    if missing:
        raise KeyError(f"no recorded output for block(s) {missing}")
    blocks = [model.blocks[layer] for layer in range(below)]
    try:
        for layer, block in enumerate(blocks):
            # on the instance itself: the bridge's __setattr__ would pass ``forward`` on to the wrapped HF layer
            object.__setattr__(block, "forward", lambda *args, _out=outputs[layer], **kwargs: _out)
        yield model
    finally:
        for block in blocks:
            block.__dict__.pop("forward", None)


def active_hooks(model) -> dict[str, int]:
    """Number of hooks currently attached at each hook point that has any.

    Counts both TransformerLens handles and raw PyTorch hooks, so a hook that
    leaked past its context manager shows up here.
    """
    out: dict[str, int] = {}
    for name, hp in model.hook_dict.items():
        n = max(len(hp.fwd_hooks) + len(hp.bwd_hooks), len(hp._forward_hooks) + len(hp._backward_hooks))
        if n:
            out[name] = n
    return out
