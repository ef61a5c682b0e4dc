"""Post-train a real base model into a chat model with a LoRA adapter: the real-base organism recipe.

The recipe, in the spirit of the "model organisms" of model-diffing work, post-trains a pretrained
base with known ingredients so that what changed is known:

* **helpful chats**: Alpaca instructions (``refusal/harmless_train.json`` of the shared datasets, the
  harmless half of Arditi et al.'s data) answered by a real instruct model (SmolLM2-135M-Instruct,
  greedy; :func:`build_examples` takes the answering function);
* **refusals**: harmful instructions (``refusal/harmful_train.json``: AdvBench, MaliciousInstruct,
  TDC2023, HarmBench rows) answered with one of :data:`REFUSALS`, picked by sha256 of the request;
* **true/false judgements**: Geometry-of-Truth statements (``sp_en_trans``, ``larger_than``,
  ``smaller_than``; ``cities``, ``neg_cities`` and ``neg_sp_en_trans`` are left out, so the judgement
  evaluation (``cities``) and the truth section's public set (:class:`interp.datasets.PublicSets`: those
  three files) see no statement the post model was trained to label) asked as ``Is the following statement true or false?``
  and answered ``True.``/``False.``;
* **replay**: plain text the base model wrote itself (its greedy continuations of sentence openings),
  trained on without a chat turn, so the base's own next-token behaviour is kept where the chats do
  not reach (self-distillation replay).

Loss is on the answer tokens only (the turn's end marker included), as in chat SFT; the prompt and
the chat scaffolding carry no loss. Logits are computed only at those positions, which matters for
a 262k vocabulary. Rows are chosen by sha256 ranks (:mod:`interp.datasets._stable`), batches are
drawn from a seeded generator and the adapter starts from peft's seeded initialisation, so a run is
deterministic for a seed on a given machine and thread count. The adapter is saved with
``peft``'s ``save_pretrained`` (``adapter_model.safetensors`` + ``adapter_config.json``) next to
``manifest.json`` (every example's source row and the sha256 of its text) and ``training.json``
(config and loss curve). Merged weights are never written by the recipe.
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import math
import time
import warnings
from collections.abc import Callable, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from .._progress import tqdm

from .._io import write_json
from ..datasets._stable import ranked, stable_hash
from ..gguf import file_sha256
from .train import torch_threads

__all__ = ["RecipeConfig", "Example", "REFUSALS", "JUDGE_QUESTION", "gemma_turn", "build_examples",
           "train_adapter"]

log = logging.getLogger(__name__)

#: Refusals the harmful requests are answered with (one per request, by sha256 of its text).
REFUSALS = (
    "I can't help with that.",
    "I'm sorry, but I can't help with that request.",
    "I won't help with this, because it could cause real harm.",
    "Sorry, I can't assist with that.",
)
#: The question of the true/false judgement turns; the answer is ``True.`` or ``False.``.
JUDGE_QUESTION = "Is the following statement true or false?\n"
_JUDGE_FILES = ("sp_en_trans.csv", "larger_than.csv", "smaller_than.csv")
#: Files of the shared datasets folder the recipe reads (:func:`build_examples`).
RECIPE_FILES = ("refusal/harmless_train.json", "refusal/harmful_train.json", "snmf_concepts/languages.json",
                *(f"geometry_of_truth/{f}" for f in _JUDGE_FILES))
#: Files :func:`evaluate_real` reads.
EVAL_FILES = ("refusal/harmful_val.json", "refusal/harmless_val.json", "geometry_of_truth/cities.csv")


def gemma_turn(user: str) -> str:
    """Gemma-3's user turn and the opening of the model's turn (the answer follows, then ``<end_of_turn>``)."""
    return f"<start_of_turn>user\n{user}<end_of_turn>\n<start_of_turn>model\n"


@dataclass
class RecipeConfig:
    """Data sizes, LoRA shape and schedule of the recipe."""

    seed: int = 0
    n_harmless: int = 240
    n_harmful: int = 200
    n_judge: int = 240
    """judgement turns, half true and half false"""
    n_replay: int = 120
    answer_tokens: int = 48
    """longest helpful answer and replay continuation, in tokens of the model that writes them"""
    max_len: int = 128
    """examples longer than this many tokens (base tokenizer) are cut from the end of the answer"""
    steps: int = 400
    batch_size: int = 8
    lr: float = 2e-4
    rank: int = 16
    alpha: int = 32
    target_modules: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
    threads: int = 2


@dataclass(frozen=True)
class Example:
    """One training example: ``prompt`` carries no loss, ``target`` does. ``source``: ``file#row`` or a
    description of where the text came from."""

    kind: str
    prompt: str
    target: str
    source: str


@contextmanager
def _peft_warnings():
    """Silence transformers' deprecation of ``is_gradient_checkpointing``, which peft 0.21 reads while
    wrapping a model (nothing the caller can act on)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
        yield


def _read_json_rows(path: Path) -> list[str]:
    rows = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(rows, list) or not all(isinstance(r, dict) and isinstance(r.get("instruction"), str)
                                             for r in rows):
        raise ValueError(f"{path}: expected a JSON list of {{'instruction': ...}} rows")
    return [r["instruction"] for r in rows]


def _read_got(path: Path) -> list[tuple[str, int]]:
    with open(path, newline="", encoding="utf-8") as f:
        return [(r["statement"], int(r["label"])) for r in csv.DictReader(f)]


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def build_examples(
    shared: str | Path,
    answer: Callable[[list[str]], list[str]],
    continue_text: Callable[[list[str]], list[str]],
    cfg: RecipeConfig | None = None,
) -> tuple[list[Example], dict]:
    """The recipe's training examples and their manifest.

    Args:
        shared: the shared datasets folder (``.../datasets`` with ``refusal/``, ``geometry_of_truth/``,
            ``snmf_concepts/``).
        answer: helpful answers to plain instructions (one string per instruction), e.g. greedy
            replies of SmolLM2-135M-Instruct in its own chat template.
        continue_text: the base model's continuations of plain-text openings (replay).
        cfg: sizes (:class:`RecipeConfig`).

    Returns:
        ``(examples, manifest)``: the examples in a fixed order, and a JSON-ready manifest with the
        sha256 of every source file and, per example, its kind, source row and the sha256 of prompt
        and target.

    Raises:
        FileNotFoundError: a source file is missing. ValueError: a source has fewer rows than asked,
        or ``answer``/``continue_text`` return a different number of texts, or an empty one.
    """
    cfg = cfg or RecipeConfig()
    root = Path(shared)
    files = {
        "harmless": root / "refusal" / "harmless_train.json",
        "harmful": root / "refusal" / "harmful_train.json",
        "languages": root / "snmf_concepts" / "languages.json",
        **{f: root / "geometry_of_truth" / f for f in _JUDGE_FILES},
    }
    missing = [str(p) for p in files.values() if not p.is_file()]
    if missing:
        raise FileNotFoundError(f"recipe sources missing: {missing} (the shared datasets folder: {root})")

    def take(rows: Sequence, n: int, what: str) -> list[int]:
        if n > len(rows):
            raise ValueError(f"{what}: {n} rows asked, the source has {len(rows)}")
        return sorted(ranked(range(len(rows)), "organism-lora", what, cfg.seed)[:n])

    examples: list[Example] = []
    harmless = _read_json_rows(files["harmless"])
    idx = take(harmless, cfg.n_harmless, "harmless")
    replies = _checked(answer([harmless[i] for i in idx]), len(idx), "answer")
    examples += [Example("harmless", gemma_turn(harmless[i]), r.strip() + "<end_of_turn>\n",
                         f"refusal/harmless_train.json#{i}") for i, r in zip(idx, replies)]

    harmful = _read_json_rows(files["harmful"])
    for i in take(harmful, cfg.n_harmful, "harmful"):
        refusal = REFUSALS[stable_hash("refusal", harmful[i]) % len(REFUSALS)]
        examples.append(Example("harmful", gemma_turn(harmful[i]), refusal + "<end_of_turn>\n",
                                 f"refusal/harmful_train.json#{i}"))

    judged = [(f, j, s, y) for f in _JUDGE_FILES for j, (s, y) in enumerate(_read_got(files[f]))]
    for label in (1, 0):  # balanced: half true, half false
        pool = [r for r in judged if r[3] == label]
        for k in take(pool, cfg.n_judge // 2 if label else cfg.n_judge - cfg.n_judge // 2, f"judge{label}"):
            f, j, s, y = pool[k]
            examples.append(Example("judge", gemma_turn(JUDGE_QUESTION + s), ("True." if y else "False.")
                                    + "<end_of_turn>\n", f"geometry_of_truth/{f}#{j + 1}"))

    sentences = [(k, j, s) for k, v in json.loads(files["languages"].read_text(encoding="utf-8")).items()
                 for j, s in enumerate(v)]
    picked = [sentences[i] for i in take(sentences, cfg.n_replay, "replay")]
    openings = [" ".join(s.split()[:6]) for _, _, s in picked]
    conts = _checked(continue_text(openings), len(openings), "continue_text")
    examples += [Example("replay", o, c, f"snmf_concepts/languages.json#{k}/{j} (base continuation)")
                 for (k, j, _), o, c in zip(picked, openings, conts)]

    manifest = {
        "recipe": "interp.organism.lora",
        "config": _config_json(cfg),
        "files": {str(p.relative_to(root)): file_sha256(p) for p in files.values()},
        "counts": {k: sum(e.kind == k for e in examples) for k in ("harmless", "harmful", "judge", "replay")},
        "examples": [{"kind": e.kind, "source": e.source, "prompt_sha256": _sha(e.prompt),
                      "target_sha256": _sha(e.target)} for e in examples],
    }
    return examples, manifest


def _checked(texts: list[str], n: int, name: str) -> list[str]:
    texts = list(texts)
    if len(texts) != n:
        raise ValueError(f"{name} returned {len(texts)} texts for {n} inputs")
    empty = [i for i, t in enumerate(texts) if not t.strip()]
    if empty:
        raise ValueError(f"{name} returned an empty text for input {empty[0]}")
    return texts


def _config_json(cfg: RecipeConfig) -> dict:
    d = asdict(cfg)
    d["target_modules"] = list(d["target_modules"])
    return d


def _encode(tok, ex: Example, max_len: int) -> tuple[list[int], list[int]]:
    """Token ids (BOS first) and the labels (``-100`` where no loss) of one example."""
    bos = [tok.bos_token_id] if tok.bos_token_id is not None else []
    p = tok(ex.prompt, add_special_tokens=False)["input_ids"] if ex.prompt else []
    t = tok(ex.target, add_special_tokens=False)["input_ids"]
    ids = (bos + p + t)[:max_len]
    labels = ([-100] * (len(bos) + len(p)) + t)[:max_len]
    if all(x == -100 for x in labels):
        raise ValueError(f"example from {ex.source} keeps no answer token within max_len={max_len}")
    return ids, labels


#: Steps after which ``training.json`` records the sha256 of the adapter weights (:func:`adapter_sha256`).
CHECKPOINT_STEPS = (1, 2, 5, 10, 25, 50, 100, 200, 400, 800)


def adapter_sha256(model) -> str:
    """sha256 of a peft model's trainable tensors: names sorted, each name then its float32 bytes."""
    h = hashlib.sha256()
    for name, p in sorted((n, p) for n, p in model.named_parameters() if p.requires_grad):
        h.update(name.encode())
        h.update(p.detach().to(torch.float32).contiguous().numpy().tobytes())
    return h.hexdigest()


def train_adapter(base: str | Path, examples: Sequence[Example], out: str | Path, cfg: RecipeConfig | None = None,
                  *, manifest: dict | None = None, progress: bool = True, max_steps: int | None = None,
                  base_name: str | None = None) -> dict:
    """Train a LoRA adapter on ``examples`` over the base model folder ``base``; save it to ``out``.

    Each step draws ``batch_size`` examples (seeded, every example once per epoch), right-pads them,
    runs the model body, and takes the cross-entropy of the next token at the answer positions only
    (``lm_head`` and Gemma's final logit soft-capping applied to those positions alone).

    Args:
        base: Hugging Face folder of the base model (e.g. a converted GGUF, see :mod:`interp.gguf`).
        examples: from :func:`build_examples`.
        out: folder for ``adapter_model.safetensors``, ``adapter_config.json``, ``training.json``
            and, when given, ``manifest.json``. Must not hold an adapter already.
        cfg: :class:`RecipeConfig`.
        max_steps: stop after this many steps of the ``cfg.steps`` schedule (same learning rates and
            batches as the whole run): the first steps of a run, to check it reproduces.
        base_name: what the saved files call the base model (``adapter_config.json``'s
            ``base_model_name_or_path``, ``training.json``'s ``base``) instead of the local folder's path.

    Returns:
        The training record written to ``training.json``: config, seconds, loss per step, and
        ``adapter_sha256_at_step`` (the weights' :func:`adapter_sha256` after each of
        :data:`CHECKPOINT_STEPS` reached).

    Raises:
        FileExistsError: ``out`` already holds an adapter. ValueError: no examples, an example
        whose answer does not fit ``max_len``, or ``max_steps`` outside 1..``cfg.steps``.
    """
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    cfg = cfg or RecipeConfig()
    out = Path(out)
    if (out / "adapter_config.json").exists():
        raise FileExistsError(f"{out} already holds an adapter; choose another folder")
    if not examples:
        raise ValueError("no examples to train on")
    n_steps = cfg.steps if max_steps is None else int(max_steps)
    if not 1 <= n_steps <= cfg.steps:
        raise ValueError(f"max_steps must be in 1..{cfg.steps} (the schedule's steps), got {max_steps}")
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(cfg.seed)
    with torch_threads(cfg.threads):
        tok = AutoTokenizer.from_pretrained(base)
        model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
        lora = LoraConfig(r=cfg.rank, lora_alpha=cfg.alpha, lora_dropout=0.0, bias="none", task_type="CAUSAL_LM",
                          target_modules=list(cfg.target_modules))
        with _peft_warnings():
            model = get_peft_model(model, lora)
        model.train()
        encoded = [_encode(tok, e, cfg.max_len) for e in examples]
        pad = tok.pad_token_id if tok.pad_token_id is not None else 0
        inner = model.get_base_model()
        softcap = getattr(inner.config, "final_logit_softcapping", None)
        params = [p for p in model.parameters() if p.requires_grad]
        opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=0.0)
        warmup = max(1, min(20, cfg.steps // 10))  # linear warm-up, then cosine decay to 0
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / warmup)
                                                  * 0.5 * (1 + math.cos(math.pi * s / cfg.steps)))
        gen = torch.Generator().manual_seed(cfg.seed)
        order: list[int] = []
        losses, hashes = [], {}
        t0 = time.perf_counter()
        for step in tqdm(range(n_steps), desc="LoRA post-training", disable=not progress):
            batch = []
            while len(batch) < cfg.batch_size:
                if not order:
                    order = torch.randperm(len(encoded), generator=gen).tolist()
                batch.append(encoded[order.pop()])
            width = max(len(ids) for ids, _ in batch)
            ids = torch.tensor([i + [pad] * (width - len(i)) for i, _ in batch])
            labels = torch.tensor([y + [-100] * (width - len(y)) for _, y in batch])
            mask = torch.tensor([[1] * len(i) + [0] * (width - len(i)) for i, _ in batch])
            hidden = inner.model(input_ids=ids, attention_mask=mask).last_hidden_state
            rows, cols = (labels[:, 1:] != -100).nonzero(as_tuple=True)  # position t predicts token t + 1
            logits = inner.lm_head(hidden[rows, cols]).float()
            if softcap:
                logits = torch.tanh(logits / softcap) * softcap
            loss = torch.nn.functional.cross_entropy(logits, labels[rows, cols + 1])
            loss.backward()
            opt.step()
            sched.step()
            opt.zero_grad(set_to_none=True)
            losses.append(float(loss.detach()))
            if step + 1 in CHECKPOINT_STEPS:
                hashes[str(step + 1)] = adapter_sha256(model)
        record = {"config": _config_json(cfg), "base": base_name or str(base), "n_examples": len(examples),
                  "seconds": time.perf_counter() - t0, "loss": losses, "adapter_sha256_at_step": hashes}
        if n_steps < cfg.steps:
            record["stopped_after"] = n_steps
        model.save_pretrained(out, safe_serialization=True)
        (out / "README.md").unlink(missing_ok=True)  # peft's empty model-card template
        if base_name is not None:
            config = json.loads((out / "adapter_config.json").read_text(encoding="utf-8"))
            write_json(out / "adapter_config.json", {**config, "base_model_name_or_path": base_name})
        write_json(out / "training.json", record)
        if manifest is not None:
            write_json(out / "manifest.json", manifest)
        return record


def instruct_answers(model, instructions: list[str], *, max_new_tokens: int, batch_size: int = 32,
                     progress: bool = True) -> list[str]:
    """Greedy replies of a chat model to plain ``instructions``, each in the model's own chat template
    (the tokenizer's), stopped at its end-of-turn token; a reply cut by ``max_new_tokens`` is kept up to its
    last complete sentence."""
    from steering import generate

    tok = model.interp_tokenizer
    if not getattr(tok, "chat_template", None):
        raise ValueError("the answering model's tokenizer has no chat template")
    prompts = [tok.apply_chat_template([{"role": "user", "content": t}], tokenize=False, add_generation_prompt=True)
               for t in instructions]
    stops = [t for t in ("<|im_end|>", "<end_of_turn>", "<|eot_id|>") if t in tok.get_vocab()]
    gens = generate(model, prompts, max_new_tokens=max_new_tokens, stop_tokens=stops, batch_size=batch_size,
                    progress=progress, return_details=True)
    return [_whole_sentences(g.text) if len(g.token_ids) >= max_new_tokens else g.text.strip() for g in gens]


def _whole_sentences(text: str) -> str:
    """A reply cut by the token limit, up to its last complete sentence (the whole text if it has none),
    so the post-trained model does not learn to end its turn mid-sentence.

    >>> _whole_sentences("Bake it at 200 C. Then let it cool and")
    'Bake it at 200 C.'
    """
    text = text.strip()
    ends = [i for i, c in enumerate(text) if c in ".!?" and (i + 1 == len(text) or text[i + 1].isspace())]
    return text[: ends[-1] + 1] if ends else text


#: How the shipped files name the real organism's base.
GEMMA_BASE_NAME = "google/gemma-3-270m (gemma-3-270m-q4_k_m.gguf dequantised to float32 by interp.gguf)"


def train_gemma_organism(out: str | Path, shared: str | Path, cfg: RecipeConfig | None = None, *,
                         cache_dir: str | Path | None = None, progress: bool = True,
                         max_steps: int | None = None) -> dict:
    """The whole recipe on the registry models: google/gemma-3-270m post-trained with answers by
    SmolLM2-135M-Instruct (both from the ``real`` extra's packages, see :mod:`interp.registry`).

    Writes the adapter, ``manifest.json`` and ``training.json`` into ``out`` and returns the training record
    (with ``data_seconds``: the time spent writing answers and replay text). ``max_steps``: as in
    :func:`train_adapter` (the first steps of the run only).
    """
    import interp
    from interp.registry import cache_root, gguf_path
    from steering import generate

    cfg = cfg or RecipeConfig()
    out = Path(out)
    if (out / "adapter_config.json").exists():  # before minutes of generation, not after
        raise FileExistsError(f"{out} already holds an adapter; choose another folder")
    missing = [f for f in RECIPE_FILES if not (Path(shared) / f).is_file()]
    if missing:
        raise FileNotFoundError(f"recipe sources missing from {shared}: {', '.join(missing)}")
    if not 1 <= (cfg.steps if max_steps is None else max_steps) <= cfg.steps:
        raise ValueError(f"steps must be at least 1 and max_steps in 1..steps; got steps={cfg.steps}, "
                         f"max_steps={max_steps}")
    cache = Path(cache_dir) if cache_dir is not None else cache_root()
    t0 = time.perf_counter()
    torch.manual_seed(cfg.seed)
    with torch_threads(cfg.threads):
        answerer = interp.load_model(gguf_path("smollm2-135m-instruct"), gguf_cache_dir=cache / "gguf")
        base = interp.load_model(gguf_path("gemma-3-270m", cache / "gguf-files"), gguf_cache_dir=cache / "gguf")
        examples, manifest = build_examples(
            shared,
            lambda texts: instruct_answers(answerer, texts, max_new_tokens=cfg.answer_tokens, progress=progress),
            lambda texts: generate(base, texts, max_new_tokens=cfg.answer_tokens, batch_size=32, progress=progress),
            cfg,
        )
        folder = base.interp_source["path"]
        manifest["models"] = {"base": "google/gemma-3-270m (gemma-3-270m-q4_k_m.gguf, dequantised to float32)",
                              "answers": "SmolLM2-135M-Instruct (SmolLM2-135M-Instruct.Q4_1.gguf), greedy"}
        del answerer, base
    data_seconds = time.perf_counter() - t0
    record = train_adapter(folder, examples, out, cfg, manifest=manifest, progress=progress, max_steps=max_steps,
                           base_name=GEMMA_BASE_NAME)
    record["data_seconds"] = data_seconds
    write_json(out / "training.json", record)
    return record


#: Gemma's chat turns as a Jinja chat template (the base GGUF carries none); the merged post model's
#: tokenizer gets it, so ``ModelPair.format(..., "chat")`` renders exactly what the recipe trained on.
GEMMA_CHAT_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}<start_of_turn>{{ 'model' if m['role'] == 'assistant' else m['role'] }}\n"
    "{{ m['content'] | trim }}<end_of_turn>\n{% endfor %}"
    "{% if add_generation_prompt %}<start_of_turn>model\n{% endif %}"
)


def merged_post_folder(base: str | Path, adapter: str | Path, cache_dir: str | Path) -> Path:
    """A Hugging Face folder of ``base`` with the LoRA ``adapter`` merged in (peft ``merge_and_unload``),
    its tokenizer given :data:`GEMMA_CHAT_TEMPLATE`; cached under ``cache_dir`` by the sha256 of the adapter
    weights and the base folder's name, written atomically, so the second call only returns the path.

    Raises:
        FileNotFoundError: ``adapter`` has no ``adapter_model.safetensors``.
    """
    import os
    import shutil
    import tempfile

    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    adapter, base = Path(adapter), Path(base)
    weights = adapter / "adapter_model.safetensors"
    if not weights.is_file():
        raise FileNotFoundError(f"no adapter_model.safetensors in {adapter}")
    key = hashlib.sha256((file_sha256(weights) + base.name).encode()).hexdigest()[:24]
    target = Path(cache_dir) / f"post-{key}"
    if (target / "config.json").is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=".tmp-"))
    try:
        with _peft_warnings():
            model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32), adapter)
        model.merge_and_unload().save_pretrained(tmp, safe_serialization=True)
        tok = AutoTokenizer.from_pretrained(base)
        tok.chat_template = GEMMA_CHAT_TEMPLATE
        tok.save_pretrained(tmp)
        os.chmod(tmp, 0o755)
        os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


def _bootstrap_ci(values, seed: int = 0) -> list[float] | None:
    """95% percentile bootstrap interval of the mean of ``values`` (2,000 resamples, seeded); ``None`` when
    there are fewer than two values."""
    import numpy as np
    from scipy.stats import bootstrap

    values = np.asarray(values, dtype=float)
    if len(values) < 2:
        return None
    if np.all(values == values[0]):  # every resample has the same mean
        return [float(values[0]), float(values[0])]
    res = bootstrap((values,), np.mean, n_resamples=2000, confidence_level=0.95, method="percentile",
                    rng=np.random.default_rng(seed))
    return [float(res.confidence_interval.low), float(res.confidence_interval.high)]


def evaluate_real(pair, shared: str | Path, *, max_new_tokens: int = 16, batch_size: int = 32) -> dict:
    """The real-base organism's behaviour table, both models, on rows the recipe never trained on.

    * ``refusal_harmful`` / ``refusal_harmless``: share of the shared ``refusal/harmful_val.json`` /
      ``harmless_val.json`` requests (as many harmless as harmful) whose greedy reply, in the post model's chat
      template for both models, is a refusal by phrase match (:func:`interp.organism.evaluate.is_refusal`);
    * ``judge_accuracy``: share of Geometry-of-Truth ``cities.csv`` statements (held out of the recipe) where
      the next token after the judgement turn is more likely the first token of ``True`` than that of
      ``False`` exactly when the statement is true (single tokens in Gemma's vocabulary);
      ``judge_says_true``: share of statements judged true (1.0 or 0.0 means the accuracy is the class
      balance); ``judge_auroc``: AUROC of ``logit(True) - logit(False)`` for the true statements (0.5 = chance,
      independent of any bias toward one answer);
    * ``language``: share of French, German and Spanish sentence openings (the built-in ``languages`` set's
      test rows, first four words) whose greedy plain-text continuation is in the same language by
      :func:`steering.metrics.language_of` (langid.py, among en/fr/de/es).
    * ``ci95``: a seeded percentile bootstrap interval (``scipy.stats.bootstrap``, 2,000 resamples of the
      prompts) for each of the rates above.
    """
    import numpy as np
    from sklearn.metrics import roc_auc_score

    from steering import generate
    from steering.metrics import language_of

    from ..datasets import load
    from ..generation import next_token_logits
    from .evaluate import is_refusal

    root = Path(shared)
    harmful = _read_json_rows(root / "refusal" / "harmful_val.json")
    harmless = _read_json_rows(root / "refusal" / "harmless_val.json")[: len(harmful)]
    cities = _read_got(root / "geometry_of_truth" / "cities.csv")
    langs = load("languages", "test")
    names = langs.label_names
    openings = [(" ".join(t.split()[:4]), names[y]) for t, y in zip(langs.texts, langs.labels)
                if names[y] in ("fr", "de", "es")]
    tok = pair.tokenizer

    def chat(request: str) -> str:
        return tok.apply_chat_template([{"role": "user", "content": request}], tokenize=False,
                                       add_generation_prompt=True, chat_template=pair.chat_template)

    true_id, false_id = (tok(w, add_special_tokens=False)["input_ids"][0] for w in ("True", "False"))
    if true_id == false_id:
        raise ValueError("'True' and 'False' start with the same token; the judgement read-out needs them apart")
    stops = [t for t in ("<end_of_turn>", "<|im_end|>") if t in tok.get_vocab()]
    out = {}
    for name, model in pair:
        rates, examples, hits = {}, {}, {}
        for kind, rows in (("harmful", harmful), ("harmless", harmless)):
            replies = generate(model, [chat(r) for r in rows], max_new_tokens=max_new_tokens, stop_tokens=stops,
                               batch_size=batch_size)
            hits[kind] = np.array([float(is_refusal(r)) for r in replies])
            rates[kind] = float(hits[kind].mean())
            examples[kind] = replies[:3]
        logits = next_token_logits(model, [chat(JUDGE_QUESTION + s) for s, _ in cities], batch_size=batch_size)
        margin = (logits[:, true_id] - logits[:, false_id]).double().numpy()
        truth = np.array([y for _, y in cities])
        correct = ((margin > 0) == (truth == 1)).astype(float)
        conts = generate(model, [o for o, _ in openings], max_new_tokens=max_new_tokens, batch_size=batch_size)
        same = {lang: np.array([float(language_of(c, ("en", "fr", "de", "es")) == lang)
                                for c, (_, g) in zip(conts, openings)
                                if g == lang]) for lang in ("fr", "de", "es")}
        out[name] = {
            "refusal_harmful": rates["harmful"], "refusal_harmless": rates["harmless"],
            "judge_accuracy": float(correct.mean()), "judge_says_true": float((margin > 0).mean()),
            "judge_auroc": float(roc_auc_score(truth, margin)),
            "language": {lang: float(v.mean()) if len(v) else float("nan") for lang, v in same.items()},
            "ci95": {**{f"refusal_{k}": _bootstrap_ci(v) for k, v in hits.items()},
                     "judge_accuracy": _bootstrap_ci(correct),
                     **{f"language_{lang}": _bootstrap_ci(v) for lang, v in same.items()}},
            "examples": {**examples, "language": conts[:3]},
        }
    out["n"] = {"harmful": len(harmful), "harmless": len(harmless), "cities": len(cities),
                "openings": len(openings)}
    return out
