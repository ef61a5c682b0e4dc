"""Every row of docs/errors.md: the bad input raises exactly the error the table says.

Each case below is keyed by its row number in the table; the test runs it and
checks the exception type and that the message contains the table's text.
A second test checks the table and the cases list the same rows, so neither
can drift from the other.
"""

from __future__ import annotations

import builtins
import errno
import pickle
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

import interp
import probes
import steering

DOC = Path(__file__).resolve().parents[1] / "docs" / "errors.md"
PROMPTS = [f"statement number {i} is true." for i in range(6)]


def _table() -> dict[str, tuple[str, str]]:
    """Row number -> (exception type, message prefix) from the markdown table."""
    rows = {}
    for line in DOC.read_text().splitlines():
        m = re.match(r"\|\s*([PSIK]?\d+)\s*\|[^|]*\|\s*`(\w+)`\s*\|\s*`(.*)`\s*\|\s*$", line)
        if m:
            rows[m.group(1)] = (m.group(2), m.group(3))
    return rows


@pytest.fixture(scope="module")
def ctx(tiny_dirs, tmp_path_factory):
    pair = interp.load_pair(*tiny_dirs["llama"], device="cpu")
    return {"pair": pair, "model": pair.post, "dirs": tiny_dirs, "tmp": tmp_path_factory.mktemp("errors")}


def _full_disk(ctx):
    """A shard write fails with ENOSPC: earlier shards stay, the store is not complete, resuming finishes it."""
    from interp import collection

    out = ctx["tmp"] / "full"
    real, calls = collection._write_shard, []

    def failing(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(*args, **kwargs)

    collection._write_shard = failing
    try:
        interp.collect(ctx["model"], PROMPTS, out=out, batch_size=2, shard_size=2, progress=False)
    finally:
        collection._write_shard = real
        # what was written is kept and readable, nothing half-written is listed; the run resumes
        manifest = interp.activations.read_manifest(out)
        assert manifest is not None and not manifest["complete"] and len(manifest["shards"]) == 1
        done = interp.collect(ctx["model"], PROMPTS, out=out, batch_size=2, shard_size=2, progress=False)
        ref = interp.collect(ctx["model"], PROMPTS, progress=False)
        torch.testing.assert_close(done["resid_post"], ref["resid_post"])


def _pickle_vector(ctx):
    path = ctx["tmp"] / "vector.pt"
    path.write_bytes(pickle.dumps({"vectors": torch.zeros(1, 4)}))
    steering.load_vector(path)


def _pickle_model(ctx):
    folder = ctx["tmp"] / "pickled"
    if not folder.exists():
        shutil.copytree(ctx["dirs"]["llama"][0], folder)
        (folder / "model.safetensors").unlink()
        (folder / "pytorch_model.bin").write_bytes(b"never unpickled")
    interp.load_model(folder)


def _interrupted_other(ctx):
    out = ctx["tmp"] / "other"
    interp.collect(ctx["model"], PROMPTS, out=out, progress=False)
    interp.collect(ctx["model"], PROMPTS[:3], out=out, progress=False)


def _incomplete_store(ctx):
    out = ctx["tmp"] / "incomplete"
    from interp import collection

    real = collection._write_shard
    calls = []

    def stop(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    collection._write_shard = stop
    try:
        with pytest.raises(KeyboardInterrupt):
            interp.collect(ctx["model"], PROMPTS, out=out, batch_size=2, shard_size=2, progress=False)
    finally:
        collection._write_shard = real
    interp.Activations.load(out)


def _discarded_refusal(ctx):
    from steering.refusal import mean_activations, select_direction

    m = ctx["model"]
    diffs = mean_activations(m, PROMPTS[:3], [-1]) - mean_activations(m, PROMPTS[3:], [-1])
    select_direction(m, diffs, [-1], PROMPTS[:3], PROMPTS[3:], [5], kl_threshold=-1.0)


def _write_gguf(ctx, name: str, arch: str, tensors=()):
    import gguf

    path = ctx["tmp"] / name
    w = gguf.GGUFWriter(str(path), arch)
    for tensor_name, array in tensors:
        w.add_tensor(tensor_name, array)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def _gguf_architecture(ctx):
    interp.load_model(_write_gguf(ctx, "bert.gguf", "bert"))


def _gguf_tensor_type(ctx):
    interp.load_model(_write_gguf(ctx, "int.gguf", "llama", [("token_embd.weight", np.zeros((8, 4), np.int32))]))


def _lost_cache(ctx):
    """A model whose cache comes back empty after the prompt (what transformers 5.24 did through the bridge)."""
    from transformers import DynamicCache

    model = ctx["model"]
    forward = model.forward

    def losing(*args, **kwargs):
        out = forward(*args, **kwargs)
        return (out[0], DynamicCache()) if kwargs.get("return_type") == "logits_and_cache" else out

    model.forward = losing
    try:
        steering.generate(model, PROMPTS[:2], max_new_tokens=3)
    finally:
        del model.forward


def _file(ctx, name: str, text: str) -> Path:
    path = ctx["tmp"] / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def _cli():
    import interp.cli

    return interp.cli


def _truth_without_labels(ctx):
    from interp.datasets import UserSets

    path = _file(ctx, "unlabelled.csv", "statement,source\nParis is in France.,atlas\nRome is in Spain.,atlas\n")
    UserSets({"truth": path}).load("truth", "train")


def _steer_forward(ctx, positions):
    model = ctx["model"]
    vec = steering.SteeringVector(torch.ones(1, _d(ctx)), (0,))
    with steering.add(model, vec, positions=positions):
        model(model.to_tokens(["one two three"]))


def _huge_batch(ctx, free_share: float = 0.5):
    """A machine with ``need / free_share`` bytes free, where ``need`` is the estimate of the one batch's pass."""
    from interp import collection

    real = collection.available_memory
    lengths = [len(e.ids) for e in interp.tokens.tokenize(ctx["model"], PROMPTS).encodings]
    need = collection.forward_estimate(ctx["model"], len(PROMPTS) * 50, max(lengths))
    collection.available_memory = lambda device: int(need / free_share)
    try:
        interp.collect(ctx["model"], PROMPTS * 50, batch_size=100000, progress=False)
    finally:
        collection.available_memory = real


def _near_context(ctx) -> str:
    """A prompt 3 tokens short of the model's context."""
    n_ctx = int(ctx["model"].cfg.n_ctx)
    k = 1
    while len(interp.tokens.tokenize(ctx["model"], ["word " * (k + 1)]).encodings[0].ids) <= n_ctx - 3:
        k += 1
    return "word " * k


def _rounding_pair(ctx):
    """Two activation sets whose means differ by float rounding only: ``[8, 1, d]`` each."""
    acts = torch.randn(8, 1, _d(ctx), generator=torch.Generator().manual_seed(0)) * 10
    other = acts.flip(0).clone()
    other[0, 0, 0] += 1e-4
    return acts, other


def _model_copy(ctx, name: str, edit) -> Path:
    folder = ctx["tmp"] / name
    if not folder.exists():
        shutil.copytree(ctx["dirs"]["llama"][1], folder)
        edit(folder)
    return folder


def _drop_tokenizer(folder: Path) -> None:
    for f in folder.iterdir():
        if f.name.startswith("tokenizer") or f.name in ("vocab.json", "merges.txt", "special_tokens_map.json"):
            f.unlink()


def _truncate_weights(folder: Path) -> None:
    w = next(folder.glob("*.safetensors"))
    w.write_bytes(w.read_bytes()[: w.stat().st_size // 2])


def _cpu_only_cuda(ctx):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA: the row is about a torch without it")
    interp.load_model(ctx["dirs"]["llama"][1], device="cuda")


def _rounding_difference(ctx):
    with pytest.warns(UserWarning, match="its direction is noise"):
        vec = steering.SteeringVector.from_mean_difference(*_rounding_pair(ctx), layers=[1])
    assert float(vec.vectors.norm()) > 0
    steering.Ablate(vec)


def _vector_folder(ctx):
    folder = ctx["tmp"] / "vectors"
    steering.SteeringVector(torch.ones(1, 4), (0,)).save(folder / "refusal-post")
    steering.load_vector(folder)


def _add(ctx, vec, scale=None):
    with steering.add(ctx["model"], vec, scale=scale):
        ctx["model"](ctx["model"].to_tokens(["one two three"]))


def _diffs(ctx, n: int = 1) -> torch.Tensor:
    """``[n_positions, layer, d]`` refusal differences of ones."""
    return torch.ones(n, int(ctx["model"].cfg.n_layers), _d(ctx))


def _ones_vector(ctx):
    return steering.SteeringVector(torch.ones(1, _d(ctx)), (0,))


def _hand_built_rounding(ctx):
    """A vector built by hand (no ``meta["relative_norm"]``) of norm ~1e-8: float rounding next to activations."""
    return steering.SteeringVector(torch.randn(_d(ctx), generator=torch.Generator().manual_seed(0)) * 1e-9, (1,))


def _overflowing_generation(ctx):
    from interp.sites import site_width

    huge = steering.SteeringVector(torch.full((1, site_width(ctx["model"], "mlp_pre")), 3e38), (0,), "mlp_pre")
    steering.generate(ctx["model"], ["Hi"], [huge], max_new_tokens=2)


def _ablate_forward(ctx, vec):
    with steering.ablate(ctx["model"], vec):
        ctx["model"](ctx["model"].to_tokens(["one two three"]))


def _nan_weights(folder: Path) -> None:
    from safetensors.torch import load_file, save_file

    w = next(folder.glob("*.safetensors"))
    tensors = load_file(w)
    name = sorted(tensors)[0]
    tensors[name] = tensors[name].clone()
    tensors[name].view(-1)[0] = float("nan")
    save_file(tensors, str(w), metadata={"format": "pt"})


def _broken_tokenizer(folder: Path) -> None:
    (folder / "tokenizer.json").write_text("")


def _half_bpe(folder: Path) -> None:
    for f in folder.iterdir():
        if f.name.startswith("tokenizer") or f.name in ("merges.txt", "special_tokens_map.json"):
            f.unlink()
    (folder / "vocab.json").write_text('{"a": 0}')


def _train_organism(out: Path):
    from interp.organism.train import TrainConfig, train_pair

    train_pair(out, TrainConfig(base_steps=1, post_steps=1), progress=False)


def _d(ctx):
    return int(ctx["model"].cfg.d_model)


CASES = {
    1: lambda c: interp.collect(c["model"], [], progress=False),
    2: lambda c: interp.collect(c["model"], ["fine", ""], progress=False),
    3: lambda c: interp.collect(c["model"], PROMPTS, "resid", progress=False),
    4: lambda c: interp.collect(c["model"], PROMPTS, layers=[9], progress=False),
    5: lambda c: interp.collect(c["model"], ["word " * 400], progress=False),
    6: lambda c: interp.collect(c["model"], ["no period here"], positions="period", progress=False),
    7: lambda c: interp.collect(c["model"], PROMPTS, memory_budget="1KB", progress=False),
    8: _interrupted_other,
    9: _incomplete_store,
    10: _full_disk,
    11: lambda c: interp.load_pair(c["dirs"]["llama"][0], c["dirs"]["qwen2"][1]),
    12: _pickle_model,
    13: lambda c: interp.load_model(c["tmp"] / "no-such-model"),
    14: lambda c: probes.MassMeanProbe().fit(np.ones((6, 4)), np.zeros(6)),
    15: lambda c: probes.LogisticProbe().fit(np.full((6, 4), np.nan), np.arange(6) % 2),
    16: lambda c: probes.SNMF(2).fit(torch.full((10, 4), float("inf"))),
    17: lambda c: probes.SNMF(8).fit(np.ones((10, 4))),
    18: lambda c: steering.add(c["model"], steering.SteeringVector(torch.ones(1, _d(c) + 1), (0,))).__enter__(),
    19: _pickle_vector,
    20: lambda c: steering.load_vector(c["tmp"] / "missing.safetensors"),
    21: lambda c: steering.SteeringVector(torch.full((1, 4), float("nan")), (0,)),
    22: lambda c: steering.add(c["model"], steering.SteeringVector(torch.ones(1, _d(c)), (0,)),
                               positions=3).__enter__(),
    23: lambda c: steering.generate(c["model"], [], max_new_tokens=4),
    24: lambda c: steering.calibrate_scale(c["model"], steering.SteeringVector(torch.ones(1, _d(c)), (0,)), "Hi", 0),
    25: _discarded_refusal,
    26: lambda c: interp.compare.compare(pair=c["pair"], concepts=["honesty"], out=None),
    27: lambda c: interp.datasets.load("organism/truth", "validation"),
    28: lambda c: probes.SNMF(2, dtype="float16").fit(np.ones((10, 4))),
    29: _gguf_architecture,
    30: _gguf_tensor_type,
    31: _lost_cache,
    32: lambda c: interp.compare.compare(pair=c["pair"], options={"truth": {"nie_spans": "last"}}, out=None),
    33: lambda c: interp.compare.compare(pair=c["pair"], options={"truth": {"nie_shots": "4"}}, out=None),
    34: lambda c: interp.compare.compare(pair=c["pair"], options={"truth": {"data": str(c["tmp"] / "no.csv")}},
                                         out=None),
    35: lambda c: interp.compare.compare(pair=c["pair"], concepts=["refusal"],
                                         options={"refusal": {"data": str(c["tmp"] / "no.csv")}}, out=None),
    36: lambda c: interp.compare.compare(pair=c["pair"], user_concepts={"truth": ("a.jsonl", "b.jsonl")}, out=None),
    37: lambda c: interp.datasets.PromptSet("few", ["a", "b", "c", "d", "e", "f"], [0, 1] * 3, ("x", "y"),
                                            [{"group": i // 2} for i in range(6)]).split(0.25),
    38: lambda c: steering.Ablate(steering.SteeringVector(torch.zeros(c["pair"].post.cfg.d_model), (1,), "resid_pre")),
    39: lambda c: steering.Add(steering.SteeringVector(torch.ones(c["pair"].post.cfg.d_model), (1,), "resid_post"),
                              scale=float("nan")),
    40: lambda c: interp.datasets.load_file(_file(c, "is_true.csv", "statement,is_true\nA.,1\nB.,0\n")),
    41: lambda c: interp.datasets.load_file(_file(c, "case.jsonl", '{"text": "a", "label": "Harmful"}\n'
                                                                  '{"text": "b", "label": "harmful"}\n')),
    42: lambda c: interp.datasets.load_file(_file(c, "one.csv", "statement,label\nA.,1\nB.,1\nC.,1\nD.,1\n")).split(),
    43: _truth_without_labels,
    44: lambda c: _steer_forward(c, "generated"),
    45: lambda c: _steer_forward(c, -40),
    46: lambda c: steering.generate(c["model"], ["Hi"], max_new_tokens=0),
    47: lambda c: _huge_batch(c, 1.5),
    48: lambda c: interp.load_model(_model_copy(c, "no-tokenizer", _drop_tokenizer)),
    49: lambda c: interp.load_model(_model_copy(c, "truncated", _truncate_weights)),
    50: lambda c: interp.collect(c["pair"], PROMPTS, progress=False),
    51: _cpu_only_cuda,
    52: _rounding_difference,
    53: _vector_folder,
    54: lambda c: steering.Add(_ones_vector(c), 1e300).hooks(c["model"]),
    55: _overflowing_generation,
    56: lambda c: _ablate_forward(c, _hand_built_rounding(c)),
    57: lambda c: interp.load_model(_model_copy(c, "nan-weights", _nan_weights)),
    58: lambda c: interp.load_model(_model_copy(c, "broken-tokenizer", _broken_tokenizer)),
    59: lambda c: interp.load_model(_model_copy(c, "half-bpe", _half_bpe)),
    60: lambda c: interp.load_model(c["dirs"]["llama"][1], device="gpu"),
    61: lambda c: interp.load_pair(c["pair"].base, c["pair"].post),
    62: lambda c: probes.fit_layers(torch.randn(6, 2, 4), None),
    63: lambda c: interp.datasets.PromptSet("few", list("abcd"), [0, 1, 0, 1], ("false", "true"),
                                            [{"group": i} for i in range(4)]).split(0.25),
    64: lambda c: interp.collect(c["model"], PROMPTS, batch_size=None, progress=False),
    65: lambda c: _ones_vector(c).save(c["tmp"]),
    67: lambda c: _train_organism(_file(c, "organism-out", "x")),
    66: lambda c: steering.calibrate_scale(c["model"], steering.SteeringVector(torch.zeros(1, _d(c)), (0,)), "Hi", 0.5),
}

# Rows P1.. of the probes table.
CASES_PROBES = {
    "P1": lambda c: probes.MassMeanProbe(covariance=True,
        ridge=float("nan")).fit(np.random.default_rng(0).normal(size=(20, 4)), np.arange(20) % 2),
    "P2": lambda c: probes.LDAProbe(shrinkage="ledoit").fit(np.random.default_rng(0).normal(size=(20, 4)),
        np.arange(20) % 2),
    "P3": lambda c: probes.LogisticProbe(C=float("nan")).fit(np.random.default_rng(0).normal(size=(20, 4)),
        np.arange(20) % 2),
    "P4": lambda c: probes.LogisticProbe(max_iter=0).fit(np.random.default_rng(0).normal(size=(20, 4)),
        np.arange(20) % 2),
    "P5": lambda c: probes.LogisticProbe(max_iter=2.5).fit(np.random.default_rng(0).normal(size=(20, 4)),
        np.arange(20) % 2),
    "P6": lambda c: probes.MassMeanProbe(covariance=True).fit(np.random.default_rng(0).normal(size=(20, 4)) * 1e200,
        np.arange(20) % 2),
    "P7": lambda c: probes.fit_layers(torch.zeros(20, 0, 4), torch.arange(20) % 2),
    "P8": lambda c: probes.fit_layers(torch.randn(20, 3, 4), torch.arange(20) % 2, "logistic", C=float("nan")),
    "P9": lambda c: probes.fit_layers(torch.randn(20, 3, 4), torch.arange(20) % 2, "logistic", C="1"),
    "P10": lambda c: probes.fit_layers(torch.randn(20, 3, 4), torch.arange(20) % 2, "logistic", tol=float("nan")),
    "P11": lambda c: probes.fit_layers(torch.randn(20, 3, 4), torch.arange(20) % 2, "logistic", dtype=torch.float16),
    "P12": lambda c: probes.score_layers(probes.fit_layers(torch.randn(20, 3, 4), torch.arange(20) % 2),
        torch.randn(20, 2, 4), torch.arange(20) % 2),
    "P13": lambda c: probes.score_layers(probes.LayerFit("x", torch.full((3, 4), float("nan")), torch.zeros(3)),
        torch.randn(20, 3, 4), torch.arange(20) % 2),
    "P14": lambda c: probes.sweep({}, {}),
    "P15": lambda c: probes.sweep({"m": None}, {"m": None}, methods=()),
    "P16": lambda c: probes.sweep({"m": None}, {"m": None}, methods="logistic"),
    "P17": lambda c: probes.mahalanobis_cosine(torch.ones(3, 4), torch.ones(3, 4), torch.full((5, 3, 4), float("nan"))),
    "P18": lambda c: probes.transfer(probes.fit_layers(torch.randn(20, 3, 4), torch.arange(20) % 2),
        torch.randn(20, 3, 4), torch.arange(20) % 2, center=torch.full((3, 4), float("nan"))),
    "P19": lambda c: probes.generalization_matrix({}, {"a": (torch.randn(20, 3, 4), torch.arange(20) % 2)}),
    "P20": lambda c: __import__("probes.stats").stats.bootstrap_ci(np.mean, (np.arange(10.0),), n_resamples=1),
    "P21": lambda c: __import__("probes.stats").stats.bootstrap_ci(np.mean, (np.arange(10.0),), confidence=95),
    "P22": lambda c: __import__("probes.stats").stats.bootstrap_ci(np.mean, ()),
    "P23": lambda c: __import__("probes.stats").stats.bootstrap_ci(np.mean, (np.float64(3.0),)),
    "P24": lambda c: __import__("probes.stats").stats.mean_ci(np.r_[np.arange(10.0), np.nan]),
    "P25": lambda c: __import__("probes.stats").stats.proportion_ci(np.r_[1, 0, 1], confidence=1.0),
    "P26": lambda c: __import__("probes.stats").stats.proportion_ci(np.float64(1.0)),
    "P27": lambda c: __import__("probes.stats").stats.accuracy_ci(probes.fit_layers(torch.randn(20, 3, 4),
        torch.arange(20) % 2), torch.randn(20, 3, 4), torch.arange(20) % 2 + 1),
    "P28": lambda c: __import__("probes.stats").stats.accuracy_ci(probes.fit_layers(torch.randn(20, 3, 4),
        torch.arange(20) % 2), torch.randn(20, 3, 4), torch.tensor([1])),
    "P29": lambda c: __import__("probes.stats").stats.accuracy_ci(probes.fit_layers(torch.randn(20, 3, 4),
        torch.arange(20) % 2), torch.full((20, 3, 4), float("nan")), torch.arange(20) % 2),
    "P30": lambda c: __import__("probes.stats").stats.shuffled_label_accuracy(torch.randn(20, 3, 4),
        torch.arange(20) % 2, torch.randn(20, 3, 4), torch.arange(20) % 2, n_shuffles=0),
    "P31": lambda c: __import__("probes.stats").stats.shuffled_label_accuracy(torch.randn(20, 3, 4), torch.zeros(20),
        torch.randn(20, 3, 4), torch.arange(20) % 2),
    "P32": lambda c: __import__("probes.stats").stats.split_half_directions(torch.randn(3, 3, 4),
        torch.tensor([0, 1, 0])),
    "P33": lambda c: __import__("probes.stats").stats.split_half_directions(torch.randn(20, 3, 4),
        torch.arange(20) % 3),
    "P34": lambda c: __import__("probes.stats").stats.direction_cosine_ci(torch.full((20, 3, 4), float("nan")),
        torch.randn(20, 3, 4), torch.arange(20) % 2),
    "P35": lambda c: __import__("probes.stats").stats.direction_cosine_ci(torch.randn(20, 3, 4), torch.randn(20, 3, 3),
        torch.arange(20) % 2),
    "P36": lambda c: __import__("probes.stats").stats.paired_difference_cosine_ci(torch.full((10, 3, 4), float("nan")),
        torch.ones(10, 3, 4)),
    "P37": lambda c: __import__("probes.stats").stats.paired_difference_cosine_ci(torch.ones(10, 0, 3, 4),
        torch.ones(10, 0, 3, 4)),
    "P38": lambda c: probes.activation_probability(torch.randn(30, 5), torch.arange(30) % 3, 2),
    "P39": lambda c: probes.activation_probability(torch.randn(30, 5), torch.arange(30) % 3, 3.0),
    "P40": lambda c: probes.activation_probability(torch.randn(30, 5), torch.arange(30) % 3 + 0.5, 4),
    "P41": lambda c: probes.activation_probability(torch.full((30, 5), float("nan")), torch.arange(30) % 3, 3),
    "P42": lambda c: probes.activation_probability(torch.randn(30, 5), torch.arange(30) % 3, 3, threshold=float("nan")),
    "P43": lambda c: probes.lape(np.full((1, 100, 3), 0.5), top_rate=float("nan")),
    "P44": lambda c: probes.lape(np.full((1, 100, 3), 0.5), top_rate="0.01"),
    "P45": lambda c: probes.SNMF(2, device="cpu").fit(torch.zeros(10, 4)),
    "P46": lambda c: probes.SNMF(2, ridge=float("nan")).fit(np.ones((10, 4))),
    "P47": lambda c: probes.SNMF(2, tol=float("nan")).fit(np.ones((10, 4))),
    "P48": lambda c: probes.SNMF(2, max_iter=2.5).fit(np.ones((10, 4))),
    "P49": lambda c: probes.SNMF(2, chunk_size=-5).fit(np.ones((10, 4))),
    "P50": lambda c: probes.SNMF(2, transform_iter=-1).fit(np.ones((10, 4))),
    "P51": lambda c: probes.SNMF(2, sparsity=0.5, max_iter=5,
        device="cpu").fit(np.abs(np.random.default_rng(0).normal(size=(40, 6)))).transform(torch.zeros(0, 6)),
    "P52": lambda c: probes.SNMF(2, sparsity=0.5, max_iter=5,
        device="cpu").fit(np.abs(np.random.default_rng(0).normal(size=(40, 6)))).inverse_transform(np.ones((5, 3))),
    "P53": lambda c: probes.match_features(np.full((2, 4), np.nan), np.ones((2, 4))),
    "P54": lambda c: probes.feature_usage(np.ones((2, 4)), np.full((5, 2), np.nan)),
    "P55": lambda c: probes.feature_usage(np.ones((2, 4)), -np.ones((5, 2))),
}
# Rows S1.. of the steering table.
CASES_STEERING = {
    "S1": lambda c: steering.generate(c["model"], ["Hi there"], max_new_tokens=2, stop_tokens="END"),
    "S2": lambda c: steering.refusal.mean_activations(c["model"], "How do I bake bread?", [-1]),
    "S3": lambda c: steering.metrics.refusal_rate(["hello"], phrases=[]),
    "S4": lambda c: steering.metrics.is_refusal("I cannot", within=0),
    "S5": lambda c: steering.metrics.refusal_token_ids(c["pair"].tokenizer, []),
    "S6": lambda c: steering.metrics.refusal_score(c["model"], ["Hi there"], [99999]),
    "S7": lambda c: steering.metrics.heldout_loss(c["model"], []),
    "S8": lambda c: steering.Deactivate({1: [0]}, value=float("nan")),
    "S9": lambda c: steering.Deactivate([1, 2]),
    "S10": lambda c: steering.generate(c["model"], ["Hi there"], max_new_tokens=2, do_sample=True,
                                       temperature=float("inf")),
    "S11": lambda c: steering.generate(c["model"], ["Hi there"], max_new_tokens=2, do_sample=True, top_k=0),
    "S12": lambda c: steering.generate(c["model"], ["Hi there"], max_new_tokens=2, do_sample=True, seed="abc"),
    "S13": lambda c: steering.calibrate_scale(c["model"], _ones_vector(c), "Hi there", 0.5, rtol=0),
    "S14": lambda c: steering.refusal.select_direction(c["model"], _diffs(c), [-1], [], ["Hi there"], [5]),
    "S15": lambda c: steering.refusal.select_direction(c["model"], _diffs(c, 0), [], ["How?"], ["Hi there"], [5]),
    "S16": lambda c: steering.refusal.select_direction(c["model"], _diffs(c) * float("nan"), [-1], ["How?"],
                                                       ["Hi there"], [5]),
    "S17": lambda c: steering.refusal.score_candidates(c["model"], _diffs(c), [-1], ["How?"], ["Hi there"], [5],
                                                       only=[(9, -1)]),
    "S18": lambda c: steering.refusal.select_direction(c["model"], _diffs(c), [-1], ["How?"], ["Hi there"], [5],
                                                       prune_layers=-0.5),
    "S19": lambda c: steering.SteeringVector(torch.ones(2, 4), (0, 1)).select([]),
    "S20": lambda c: steering.orthogonalize(c["model"].interp_source["path"],
                                            steering.SteeringVector(torch.ones(2, _d(c)), (0, 1)), c["tmp"] / "ortho"),
}

# Rows I1.. of the interp table.
CASES_INTERP = {
    "I1": lambda c: c["pair"].format("hello", "raw"),
    "I2": lambda c: interp.load_model(""),
    "I3": lambda c: interp.collect(c["model"], ["a b"], dtype=torch.int64, progress=False),
    "I4": lambda c: interp.collect(c["model"], interp.datasets.PromptSet("x", ["a b"])[[False]], progress=False),
    "I5": lambda c: interp.collect(c["model"], ["a b"], extra={"a": {1}}, out=c["tmp"] / "store", progress=False),
    "I6": lambda c: interp.collect(c["model"], ["a b"], memory_budget=float("inf"), progress=False),
    "I7": lambda c: interp.collect(c["model"], ["a b"], out=_file(c, "afile.txt", "x"), progress=False),
    "I8": lambda c: interp.collect(c["model"], ["a b"], positions="match:", progress=False),
    "I9": lambda c: interp.collect(c["model"], ["a b"], positions="match:$", progress=False),
    "I10": lambda c: interp.hook_name("resid_post", 1.7),
    "I11": lambda c: interp.hook_name("resid_post", -1),
    "I12": lambda c: __import__("interp.compare").compare.compare(concepts=[], out=None, progress=False),
    "I13": lambda c: _cli()._series(_cli()._parser().parse_args(["compare", "--models", ""]),
                                    {"out": str(c["tmp"] / "s")}, ["truth"], {}, {}),
    "I14": lambda c: _cli()._int_list("1,,2", "--layers"),
    "I15": lambda c: _cli()._steer(_cli()._parser().parse_args(["steer", "hi", "--vector", str(c["tmp"] / "v.st"),
                                                                "--ablate", "--positions", "last"])),
    "I16": lambda c: interp.collect(c["model"], ["a b"], progress=False).save(_file(c, "keep/n.txt", "x").parent),
}


def _facts_file(c, name: str, **change):
    import json

    row = {"prompt": "The capital city of France is called", "subject": "France", "answer": "Paris",
           "alternatives": ["Berlin", "Madrid", "Rome"], **change}
    row = {k: v for k, v in row.items() if v is not None}
    return _file(c, name, json.dumps(row) + "\n")


def _two_facts(c, name: str, **change):
    """A facts file of two rows: a good one, then one with ``change``."""
    import json

    good = {"prompt": "The capital city of Italy is called", "subject": "Italy", "answer": "Rome",
            "alternatives": ["Berlin", "Madrid"]}
    bad = {"prompt": "The capital city of France is called", "subject": "France", "answer": "Paris",
           "alternatives": ["Berlin", "Madrid", "Rome"], **change}
    return _file(c, name, json.dumps(good) + "\n" + json.dumps(bad) + "\n")


def _fact_prompts(c, **meta):
    return interp.datasets.PromptSet("facts", ["The capital city of France is called"], meta=[meta])


def _conf():
    import interp.confidence

    return interp.confidence


def _one_fact(prompt: str, subject: str):
    return interp.datasets.PromptSet("f", [prompt], meta=[{"subject": subject, "answer": " France"}])


def _trace(c, facts, **kw):
    from interp.tracing import causal_trace

    return causal_trace(c["model"], facts, **kw)


def _means(c):
    return torch.zeros(int(c["model"].cfg.d_mlp))


# Rows K1.. of the facts, knowledge and confidence table.
CASES_KNOWLEDGE = {
    "K1": lambda c: interp.datasets.load_file(_facts_file(c, "k1.jsonl", subject="Spain")),
    "K2": lambda c: interp.datasets.load_file(_facts_file(c, "k2.jsonl", prompt="France: the capital city of France "
                                                                               "is called")),
    "K3": lambda c: interp.datasets.load_file(_facts_file(c, "k3.jsonl", answer="")),
    "K4": lambda c: interp.datasets.load_file(_facts_file(c, "k4.jsonl", alternatives=["Rome", "Paris"])),
    "K5": lambda c: interp.datasets.load_file(_facts_file(c, "k5.jsonl", prompt="The capital city of France is ")),
    "K6": lambda c: interp.datasets.load_file(_facts_file(c, "k6.jsonl", subject=None), format="facts"),
    "K7": lambda c: interp.datasets.load_file(_facts_file(c, "k7.jsonl"), format="facts", label="x"),
    "K8": lambda c: interp.datasets.UserSets({"facts": f"{_facts_file(c, 'k8.jsonl')},{_facts_file(c, 'k8b.jsonl')}"}
                                             )._read("facts"),
    "K9": lambda c: _conf().expected_calibration_error([], []),
    "K10": lambda c: _conf().expected_calibration_error([0.5, 0.9], [1]),
    "K11": lambda c: _conf().expected_calibration_error([0.5, 1.2], [1, 0]),
    "K12": lambda c: _conf().expected_calibration_error([0.5, 0.9], [1, 2]),
    "K13": lambda c: _conf().expected_calibration_error([0.5, 0.9], [1, 0], n_bins=0),
    "K14": lambda c: _conf().multiple_choice(c["model"], _fact_prompts(c, subject="France")),
    "K15": lambda c: _conf().ablation_effects(c["model"], ["a b c"], {"x": []}, means=_means(c)),
    "K16": lambda c: _conf().ablation_effects(c["model"], ["a b c"], {"clean": [0]}, means=_means(c)),
    "K17": lambda c: _conf().entropy_neurons(c["model"], rho_threshold=1.5),
    "K18": lambda c: _conf().unembedding_null_space(c["model"], null_dim=_d(c) + 1),
    "K19": lambda c: _trace(c, _one_fact("The city of Lyon is in", "Rome")),
    "K20": lambda c: _trace(c, _one_fact("Lyon or Lyon is in", "Lyon")),
    "K21": lambda c: _trace(c, interp.datasets.PromptSet("f", ["The city of Lyon is in"], meta=[{"subject": "Lyon"}])),
    "K22": lambda c: _trace(c, ["The city of Lyon is in"]),
    "K23": lambda c: _trace(c, _one_fact("The city of Lyon is in", "Lyon"), kinds=["mlp", "ffn"]),
    "K24": lambda c: _trace(c, _one_fact("The city of Lyon is in", "Lyon"), window=0),
    "K25": lambda c: _trace(c, _one_fact("The city of Lyon is in", "Lyon"), noise=0),
    "K26": lambda c: _trace(c, _one_fact("The city of Lyon is in", "Lyon"), roles=["subject"]),
    "K27": lambda c: __import__("interp.tracing").tracing.cross_model_patch(
        interp.load_pair().post, c["model"], _one_fact("The city of Lyon is in", "Lyon")),
    "K28": lambda c: __import__("interp.compare").compare.plan(["knowledge"],
                                                                options={"knowledge": {"kinds": "mlp,ffn"}}),
    "K29": lambda c: __import__("interp.compare").compare.plan(["confidence"], options={"confidence": {"n_bins": 0}}),
    "K30": lambda c: __import__("interp.compare").compare.plan(["knowledge"],
                                                                options={"knowledge": {"data": "missing.jsonl"}}),
    "K31": lambda c: __import__("interp.compare").compare.plan(["confidence"], options={"confidence": {
        "data": str(_two_facts(c, "k31.jsonl", alternatives=["Berlin", "Rome", "Berlin"]))}}),
    "K32": lambda c: __import__("interp.compare").compare.plan(["confidence"], options={"confidence": {
        "data": str(_facts_file(c, "k32.jsonl"))}}),
    "K33": lambda c: _conf().answer_options(c["model"], _fact_prompts(c, answer=" Paris",
                                                                      alternatives=(" Rome", " Rome"))),
    "K40": lambda c: _trace(c, _one_fact("The city of Lyon is in", "  ")),
    "K41": lambda c: _trace(c, interp.datasets.PromptSet("f", ["The city of Lyon is in"],
                                                         meta=[{"subject": "Lyon", "answer": "  France"}])),
    "K42": lambda c: _trace(c, interp.datasets.PromptSet("f", ["The city of Lyon is in"],
                                                         meta=[{"subject": "Lyon", "answer": " the Netherlands"}])),
    "K43": lambda c: __import__("interp.compare").compare.plan(["knowledge"], out=""),
    "K44": lambda c: __import__("interp.compare").compare.plan(["knowledge"], out=_file(c, "k44.txt", "x") / "sub"),
    "K45": lambda c: __import__("interp.compare").compare.plan(["knowledge"],
                                                                options={"knowledge": {"noise": float("nan")}}),
    "K46": lambda c: __import__("interp.compare").compare.compare(
        concepts=["knowledge"], out=None, progress=False, options={"knowledge": {"window": 7}}),
    "K47": lambda c: _conf().answer_options(c["model"], _fact_prompts(c, answer=", France",
                                                                      alternatives=(" Germany", " Spain"))),
    "K48": lambda c: _conf().multiple_choice(c["model"], _fact_prompts(c, answer=" France",
                                                                       alternatives=(" Germany", " the Netherlands"))),
    "K49": lambda c: __import__("interp.compare").compare.plan(["confidence"],
                                                                options={"confidence": {"n_bins": 100_000}}),
    "K50": lambda c: _conf().expected_calibration_error([0.5, 0.9], [1, 0], n_bins=101),
}

CASES = {**{str(k): v for k, v in CASES.items()}, **CASES_PROBES, **CASES_STEERING, **CASES_INTERP,
         **CASES_KNOWLEDGE}

# Rows of the warnings table: the call completes and warns.
WARNS = {
    "W1": lambda c: _add(c, steering.SteeringVector(torch.ones(1, _d(c)), (0,)), scale=0.0),
    "W2": lambda c: steering.SteeringVector.from_mean_difference(*_rounding_pair(c), layers=[0]),
    "W3": lambda c: _add(c, steering.SteeringVector(torch.ones(1, _d(c)), (0,), meta={"relative_norm": {"0": 1e-8}})),
    "W4": lambda c: _huge_batch(c, 0.7),
    "W5": lambda c: steering.generate(c["model"], [_near_context(c)], max_new_tokens=8),
    "W13": lambda c: _add(c, _hand_built_rounding(c)),
    "W14": lambda c: steering.generate(c["model"], ["Hi"], [steering.Add(_ones_vector(c), positions="generated")],
                                       max_new_tokens=1),
    "W10": lambda c: interp.load_pair(c["dirs"]["llama"][1], c["dirs"]["llama"][1], device="cpu"),
    "W11": lambda c: interp.datasets.PromptSet("d", ["a", "b", "a", "c"]).split(0.5, group=None),
    "W12": lambda c: interp.datasets.PromptSet("d", list("abacde"), labels=[0, 1, 1, 0, 1, 0]).split(0.5),
    "W6": lambda c: steering.Deactivate({1: []}).hooks(c["model"]),
    "W7": lambda c: steering.generate(c["model"], ["Hi there"], max_new_tokens=2, temperature=0.7, top_p=0.9),
    "W8": lambda c: steering.calibrate_scale(c["model"], _ones_vector(c), "Hi there", 1e-12, max_steps=3),
    "W9": lambda c: steering.refusal.score_candidates(c["model"], _diffs(c), [-1], ["How?"], ["How?"], [5],
                                                      only=[(0, -1)]),
}


def test_the_table_and_the_cases_list_the_same_rows():
    rows = _table()
    assert len(rows) >= 20
    assert sorted(rows) == sorted(CASES)


@pytest.mark.parametrize("row", sorted(CASES, key=lambda r: (r[0].isdigit(), r[0], int(r.lstrip("PSIK")))))
def test_each_bad_input_gives_the_documented_error(ctx, row):
    import interp.compare  # noqa: F401 - row 26

    kind, message = _table()[row]
    with pytest.raises(BaseException) as info:
        CASES[row](ctx)
    assert type(info.value).__name__ == kind, f"row {row}: {type(info.value).__name__}: {info.value}"
    assert message in str(info.value), f"row {row}: {info.value}"
    assert interp.active_hooks(ctx["model"]) == {}


def _warn_table() -> dict[str, tuple[str, str]]:
    rows = {}
    for line in DOC.read_text().splitlines():
        m = re.match(r"\|\s*(W\d+)\s*\|[^|]*\|\s*`(\w+)`\s*\|\s*`(.*)`\s*\|\s*$", line)
        if m:
            rows[m.group(1)] = (m.group(2), m.group(3))
    return rows


def test_the_warning_table_and_its_cases_list_the_same_rows():
    assert sorted(_warn_table()) == sorted(WARNS)


@pytest.mark.parametrize("row", sorted(WARNS))
def test_each_suspect_input_warns(ctx, row):
    kind, message = _warn_table()[row]
    with pytest.warns(getattr(builtins, kind)) as record:
        WARNS[row](ctx)
    texts = [str(w.message) for w in record if type(w.message).__name__ == kind]
    assert any(message in t for t in texts), f"row {row}: {texts}"
    assert interp.active_hooks(ctx["model"]) == {}


def test_formerly_failing_inputs_are_handled():
    """Row H1 of docs/errors.md: a rank-deficient logistic problem with constant massive columns fits."""
    assert "| H1 |" in DOC.read_text()
    g = torch.Generator().manual_seed(0)
    X = torch.randn(64, 4, 128, generator=g, dtype=torch.float64)  # [n_samples, layer, d], n < d
    y = torch.arange(64) % 2
    X[..., 0], X[..., 1] = 1e4, -1e4 / 7  # constant "massive activations"
    for dtype in (torch.float64, torch.float32):
        fit = probes.fit_layers(X.to(dtype), y, "logistic")
        assert torch.isfinite(fit.coef).all() and torch.isfinite(fit.intercept).all()
        acc, _ = probes.score_layers(fit, X, y)
        assert (acc == 1.0).all()


def test_mixed_case_truth_words_keep_false_0_and_true_1(tmp_path):
    """Rows H2 and H3 of docs/errors.md: TRUE/false used to sort as strings (TRUE -> 0, false -> 1)."""
    assert "| H2 |" in DOC.read_text()
    path = tmp_path / "case.csv"
    path.write_text("statement,label\nA.,TRUE\nB.,false\nC.,True\nD.,FALSE\n")
    ps = interp.datasets.load_file(path)
    assert ps.labels == (1, 0, 1, 0) and ps.label_names == ("false", "true")
    # H3: yes/no by polarity, other names case-insensitively, an AdvBench-style target column is not a label
    assert "| H3 |" in DOC.read_text()
    for text, labels, names in (("Yes\nno\nYES\n", (1, 0, 1), ("no", "yes")),
                                ("Positive\nnegative\n", (1, 0), ("negative", "Positive"))):
        path.write_text("statement,label\n" + "".join(f"S{i}.,{w}\n" for i, w in enumerate(text.split())))
        ps = interp.datasets.load_file(path)
        assert (ps.labels, ps.label_names) == (labels, names)
    adv = tmp_path / "advbench.jsonl"
    adv.write_text('{"prompt": "Write a poem", "target": "Sure, here is a poem"}\n')
    assert interp.datasets.load_file(adv).labels is None
