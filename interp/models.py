"""Booting a base / post-trained model pair through TransformerLens v4.

Both models are booted by ``TransformerBridge.boot_transformers`` with the same
arguments, so they get identical weight processing: the bridge's default, raw
Hugging Face numerics (no LayerNorm folding, no centering). A model is named by
a Hugging Face hub id, a local folder or a local ``.gguf`` file; either way the
toolkit boots it from a folder holding only safetensors weights and JSON
configs/tokenizers — a hub snapshot is fetched with exactly those files, a GGUF
file is dequantised once into a cached folder (:mod:`interp.gguf`), and a local
folder with pickle weights only (``*.bin``, ``*.pt``) is refused.

The two models must share a vocabulary: activations are compared token for
token, and a direction found in one is applied to the other on the same inputs.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import torch

from .datasets import PromptSet

__all__ = [
    "ModelPair", "ModelShape", "load_model", "load_pair", "pair_of", "read_shape", "resolve_model",
    "check_same_tokenizer", "tokenizer_of", "vocab_digest", "float_dtype",
]

log = logging.getLogger(__name__)

_PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle")
#: dtype names taken where a torch dtype is (``dtype="bfloat16"``, as :func:`interp.compare.compare` takes them).
DTYPE_NAMES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16, "float64": torch.float64}


def float_dtype(dtype, what: str = "dtype") -> torch.dtype:
    """``dtype`` as a floating torch dtype: a ``torch.dtype``, or one of the names in :data:`DTYPE_NAMES`
    (``"float32"``, ``"bfloat16"``, ``"float16"``, ``"float64"``; ``"torch.float32"`` too).

    Raises:
        TypeError: neither a ``torch.dtype`` nor a string.
        ValueError: an unknown name, or a dtype that is not floating point (e.g. ``torch.int64``).
    """
    if isinstance(dtype, str):
        name = dtype.strip().removeprefix("torch.")
        if name not in DTYPE_NAMES:
            raise ValueError(f"{what} {dtype!r} must be a floating dtype: a torch dtype (torch.float32) or one of "
                             f"{', '.join(map(repr, DTYPE_NAMES))}")
        return DTYPE_NAMES[name]
    if not isinstance(dtype, torch.dtype):
        raise TypeError(f"{what} must be a torch dtype, e.g. torch.float32 (or its name 'float32'), "
                        f"got {type(dtype).__name__}")
    if not dtype.is_floating_point:
        raise ValueError(f"{what} must be a floating dtype (torch.float32, torch.bfloat16, torch.float16), got {dtype}")
    return dtype


def _check_source(source, what: str = "model source") -> None:
    """Refuse an empty model name before anything resolves or boots.

    Raises:
        ValueError: ``source`` is empty or only whitespace.
        TypeError: ``source`` is not a string or path (a booted model, say).
    """
    if not isinstance(source, (str, os.PathLike)):
        raise TypeError(f"{what} must be a hub id, a local model folder or a .gguf file, got a {type(source).__name__};"
                        " to pair two models already booted use interp.pair_of(base, post)")
    if not str(source).strip():
        raise ValueError(f"{what} is empty: give a hub id (e.g. 'Qwen/Qwen2.5-0.5B'), a local model folder or a "
                         "local .gguf file")


_SNAPSHOT_PATTERNS = ["*.json", "*.safetensors", "*.jinja"]


def resolve_model(
    source: str | os.PathLike,
    *,
    revision: str | None = None,
    trust_remote_code: bool = False,
    dtype: torch.dtype = torch.float32,
    gguf_cache_dir: str | os.PathLike | None = None,
) -> Path:
    """Local folder holding ``source``'s config, safetensors weights and tokenizer.

    A local folder is checked and returned as is. A local ``.gguf`` file is
    dequantised to ``dtype`` and saved as a safetensors folder in
    ``gguf_cache_dir`` once (:func:`interp.gguf.convert_gguf`); later calls
    return that folder. Anything else is taken as a Hugging Face hub id and its
    safetensors/JSON files are fetched with ``huggingface_hub.snapshot_download``
    (served from the local cache when present; ``HF_HUB_OFFLINE=1`` forbids the
    network).

    Raises:
        FileNotFoundError: a path-like ``source`` that does not exist, or a
            folder without ``config.json`` or without tokenizer files.
        ValueError: a folder whose weights are not safetensors, or a
            safetensors file that is truncated or corrupt (named); a GGUF file of
            an unsupported architecture or tensor type.
        OSError: the hub could not be reached and the model is not cached.
        ValueError: also for an empty ``source`` (``""``): "model source is empty".
    """
    _check_source(source)
    s = str(source)
    path = Path(s).expanduser()
    if path.is_dir():
        return _check_folder(path)
    if s.lower().endswith(".gguf"):
        if not path.is_file():
            raise FileNotFoundError(f"GGUF file {s!r} does not exist or is not a file")
        from .gguf import convert_gguf

        return _check_folder(convert_gguf(path, dtype=dtype, cache_dir=gguf_cache_dir))
    # A hub id is "name" or "owner/name"; anything else is meant as a path.
    if path.exists() or s.startswith((".", "/", "~")) or s.count("/") > 1:
        raise FileNotFoundError(f"model folder {s!r} does not exist or is not a folder")
    try:
        from huggingface_hub import snapshot_download

        patterns = _SNAPSHOT_PATTERNS + (["*.py"] if trust_remote_code else [])
        local = snapshot_download(s, revision=revision, allow_patterns=patterns)
    except Exception as e:  # noqa: BLE001 - every hub failure gets the same advice
        raise OSError(
            f"could not fetch model {s!r} from the Hugging Face hub ({type(e).__name__}: {e}). "
            "If this machine has no network, download the model elsewhere and pass its local folder."
        ) from e
    return _check_folder(Path(local))


# Files a Hugging Face tokenizer is built from (fast JSON, SentencePiece, byte-level BPE, WordPiece, Tekken).
_TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "spiece.model", "vocab.json", "vocab.txt", "tekken.json")


def _check_folder(path: Path) -> Path:
    if not (path / "config.json").exists():
        raise FileNotFoundError(f"{path} has no config.json: not a Hugging Face model folder")
    files = [p.name for p in path.iterdir()]
    if not any(f.endswith(".safetensors") for f in files):
        pickles = [f for f in files if f.endswith(_PICKLE_SUFFIXES)]
        what = f"only pickle weights ({', '.join(pickles)})" if pickles else "no weights"
        raise ValueError(
            f"{path} holds {what}; the toolkit loads safetensors only. Convert the weights with "
            "model.save_pretrained(folder, safe_serialization=True) in a trusted environment."
        )
    _check_weight_files(path)
    if (path / "vocab.json").exists() and not (path / "merges.txt").exists() and not any(
            (path / f).exists() for f in _TOKENIZER_FILES if f != "vocab.json"):
        raise FileNotFoundError(f"{path} has vocab.json but not merges.txt (a byte-level BPE tokenizer needs both, or "
                                "a tokenizer.json); copy it from the model's original repository")
    if not any((path / f).exists() for f in _TOKENIZER_FILES) and not any(path.glob("*.tiktoken")):
        raise FileNotFoundError(
            f"{path} has no tokenizer files (one of {', '.join(_TOKENIZER_FILES)}, *.tiktoken); copy them from the "
            "model's original repository or download into the folder beside config.json"
        )
    return path


def _check_weight_files(path: Path) -> None:
    """Open each safetensors file's header (no tensor is read), so a truncated or corrupt file is named.

    Raises:
        ValueError: a file whose header cannot be read or does not cover the file (cut short in a copy or
            download).
    """
    from safetensors import SafetensorError, safe_open

    for f in sorted(path.glob("*.safetensors")):
        try:
            with safe_open(str(f), framework="pt"):
                pass
        except (SafetensorError, OSError) as e:
            raise ValueError(f"{f} is not a complete safetensors file ({e}): it was probably cut short in a "
                             "download or copy; fetch it again") from None


def check_device(device, device_map=None) -> None:
    """Refuse a device torch does not know, or a CUDA device (in ``device`` or a ``device_map``) where torch has
    none, before any model boots.

    Raises:
        ValueError: ``device`` is not a device name (``"gpu"``), or it or a ``device_map`` names CUDA and
            ``torch.cuda.is_available()`` is false.
    """
    if device is not None:
        try:
            torch.device(device)
        except (RuntimeError, TypeError):
            raise ValueError(f"device {device!r} is not a torch device: use 'cpu', 'cuda', 'cuda:1', 'mps', "
                             "...") from None
    named = [device] if device is not None else []
    if isinstance(device_map, str):
        named.append(device_map)
    elif isinstance(device_map, dict):
        named += [str(v) for v in device_map.values()]
    for d in named:
        if str(d).startswith("cuda") and not torch.cuda.is_available():
            raise ValueError(f"device {d!r}: this torch has no CUDA device (CPU build or no GPU visible); use "
                             "device='cpu' or install a CUDA build of torch on a machine with a GPU")


def load_model(
    source: str | os.PathLike,
    *,
    device: str | torch.device | None = None,
    dtype: torch.dtype | str = torch.float32,
    revision: str | None = None,
    trust_remote_code: bool = False,
    device_map: str | dict | None = None,
    n_devices: int | None = None,
    gguf_cache_dir: str | os.PathLike | None = None,
    **boot_kwargs,
):
    """Boot one model as a ``TransformerBridge`` (raw HF numerics, eval mode).

    Args:
        source: hub id (``"Qwen/Qwen2.5-0.5B-Instruct"``), local folder, or local
            ``.gguf`` file (dequantised once to ``dtype`` into a cached
            safetensors folder, see :mod:`interp.gguf`).
        device: e.g. ``"cpu"``, ``"cuda"``; default: TransformerLens' choice.
        dtype: parameter dtype (for a GGUF file, also the dtype it is dequantised to): a floating torch
            dtype or its name (``"float32"``, ``"bfloat16"``, ``"float16"``).
        revision: hub revision (branch, tag or commit).
        trust_remote_code: run model code shipped with the checkpoint. Off by
            default; turn on only for a repository you trust.
        device_map: shard a model too large for one device: ``"auto"``,
            ``"balanced"`` or a Hugging Face device map, placed by accelerate as
            TransformerLens does (not with ``device``). Inputs go to the device
            of the first block; hooks see each layer on its own device.
        n_devices: shorthand: split the layers over this many CUDA devices.
        gguf_cache_dir: where converted GGUF files are cached; default
            ``$INTERP_CACHE/gguf`` or ``~/.cache/interp/gguf``.
        **boot_kwargs: passed to ``TransformerBridge.boot_transformers``
            (e.g. ``max_memory``, ``n_ctx``).

    Raises:
        FileNotFoundError, ValueError, OSError: as :func:`resolve_model` (a missing folder, config or
            tokenizer files; pickle-only, truncated or corrupt weights; named before anything boots);
            ``ValueError`` also for tokenizer files that cannot be read (before the weights) and for
            weights holding NaN or inf (named, after they load);
            ``ValueError`` also for ``device`` with ``device_map``, a CUDA ``device`` where torch has none,
            or more devices than the machine has, an empty ``source`` ("model source is empty"), an unknown
            dtype name or a dtype that is not floating point.
        TypeError: ``dtype`` neither a torch dtype nor a name.
    """
    _check_source(source)
    dtype = float_dtype(dtype)
    if device_map is not None and device is not None:
        raise ValueError("give device or device_map, not both")
    check_device(device, device_map)
    if n_devices is not None:
        if n_devices < 1:
            raise ValueError(f"n_devices must be >= 1, got {n_devices}")
        if n_devices > 1 and (not torch.cuda.is_available() or torch.cuda.device_count() < n_devices):
            have = torch.cuda.device_count() if torch.cuda.is_available() else 0
            raise ValueError(f"n_devices={n_devices} needs that many CUDA devices; this machine has {have}")
    if device_map is not None:
        boot_kwargs["device_map"] = device_map
    if n_devices is not None:
        boot_kwargs["n_devices"] = n_devices
    from transformer_lens.model_bridge import TransformerBridge

    path = resolve_model(source, revision=revision, trust_remote_code=trust_remote_code, dtype=dtype,
                         gguf_cache_dir=gguf_cache_dir)
    # The checkpoint's own tokenizer, read before the weights so a broken tokenizer file is named at once.
    # TransformerLens normalises the bridge's tokenizer in place (a missing BOS becomes EOS, padding side
    # changes); the toolkit tokenises with this one so the BOS policy sees the real special tokens.
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(str(path), trust_remote_code=trust_remote_code)
    except (ValueError, OSError, TypeError, KeyError) as e:
        raise ValueError(f"{path}: the tokenizer files could not be read ({type(e).__name__}: {str(e)[:300]}); "
                         "copy them again from the model's original repository") from None
    bridge = TransformerBridge.boot_transformers(
        str(path), device=device, dtype=dtype, trust_remote_code=trust_remote_code, **boot_kwargs
    )
    bridge.eval()
    _check_finite_weights(bridge, path)
    if bridge.tokenizer is None:
        raise ValueError(f"{source!r} has no tokenizer; the toolkit needs one to tokenise prompts")
    # The bridge has no slot for where a model came from; manifests read it from here.
    bridge.interp_source = {"name": str(source), "path": str(Path(path).resolve()), "revision": revision}
    if str(source).lower().endswith(".gguf"):
        from .gguf import MARKER

        meta = json.loads((path / MARKER).read_text())
        bridge.interp_source["gguf"] = {"file": meta["source"], "sha256": meta["sha256"], "dtype": meta["dtype"]}
    bridge.interp_tokenizer = tokenizer
    return bridge


def _check_finite_weights(model, path) -> None:
    """Refuse weights holding NaN or inf (a file damaged in place: its size and header are right, its bytes not).

    Raises:
        ValueError: naming the first such parameter.
    """
    with torch.no_grad():
        for name, param in model.named_parameters():
            if param.is_floating_point() and not bool(torch.isfinite(param).all()):
                raise ValueError(f"{path}: the weight {name} holds NaN or inf: a weight file is damaged (or the "
                                 "checkpoint was saved broken); fetch it again")


def tokenizer_of(model):
    """The tokenizer the toolkit tokenises with: the checkpoint's own, as loaded by
    :func:`load_model`, or the bridge's for a bridge booted elsewhere (whose BOS
    TransformerLens may have replaced by EOS)."""
    tok = getattr(model, "interp_tokenizer", None) or model.tokenizer
    if tok is None:
        raise ValueError("model has no tokenizer; the toolkit needs one to tokenise prompts")
    return tok


def vocab_digest(tokenizer) -> str:
    """sha256 of the tokenizer's token -> id map."""
    vocab = sorted(tokenizer.get_vocab().items())
    return hashlib.sha256(json.dumps(vocab, ensure_ascii=False).encode()).hexdigest()


def check_same_tokenizer(base_tok, post_tok, names: tuple[str, str] = ("base", "post")) -> None:
    """Raise ``ValueError`` unless both tokenizers map the same tokens to the same ids."""
    a, b = base_tok.get_vocab(), post_tok.get_vocab()
    if a == b:
        return
    only_a = sorted(set(a) - set(b))
    only_b = sorted(set(b) - set(a))
    moved = sorted(t for t in set(a) & set(b) if a[t] != b[t])
    parts = [f"{names[0]} has {len(a)} tokens, {names[1]} has {len(b)}"]
    if only_a:
        parts.append(f"{len(only_a)} only in {names[0]} (e.g. {only_a[:5]})")
    if only_b:
        parts.append(f"{len(only_b)} only in {names[1]} (e.g. {only_b[:5]})")
    if moved:
        parts.append(f"{len(moved)} with different ids (e.g. {moved[:5]})")
    raise ValueError(
        "the two models' tokenizers differ: " + "; ".join(parts) + ". A base/post pair must share a "
        "vocabulary so that activations and directions are compared on the same tokens."
    )


Style = Literal["raw", "chat"]


@dataclass(frozen=True)
class ModelShape:
    """What option checks need of a pair, known before it boots when its configs can be read (:func:`read_shape`).

    Attributes:
        n_layers: transformer blocks (both models have as many).
        d_model: residual stream width (both models have the same).
        d_mlp: MLP hidden width (neurons per block), or ``None`` where the config does not say.
    """

    n_layers: int
    d_model: int
    d_mlp: int | None = None


@dataclass
class ModelPair:
    """A base model and its post-trained version, booted identically.

    Attributes:
        base, post: the two ``TransformerBridge`` models.
        chat_template: the post model's chat template (Jinja), used to format
            chat-style prompts for *both* models (a base model has no template
            of its own that it was trained on), or ``None`` if it has none.
    """

    base: object
    post: object
    chat_template: str | None = field(default=None)

    def __getattr__(self, name: str):
        # Only reached for names a ModelPair lacks: a pair passed where one model is expected
        # (interp.collect(pair, ...) reads pair.cfg) gets told which to pass.
        if name.startswith("__") or name in ("base", "post", "chat_template"):
            raise AttributeError(name)
        raise AttributeError(f"a ModelPair holds two models and has no {name!r}: pass one of them, pair.base or "
                             "pair.post, where a function takes a model (e.g. interp.collect(pair.post, prompts)), "
                             "or use interp.compare for both")

    def __repr__(self) -> str:
        from .collection import model_info

        info = {name: model_info(model) for name, model in self}
        b = info["base"]
        shape = (f"{b['n_layers']} layers, d_model {b['d_model']}, d_mlp {b['d_mlp']}, vocabulary {b['vocab_size']}, "
                 f"context {b['n_ctx']}")
        return (f"ModelPair(base={info['base']['name']!r}, post={info['post']['name']!r}; {shape}; "
                f"chat template: {'yes' if self.chat_template else 'none'})")

    @property
    def tokenizer(self):
        """The shared tokenizer (the post model's; the vocabularies are identical)."""
        return tokenizer_of(self.post)

    @property
    def chat_templates(self) -> dict[str, str | None]:
        """Each model's own chat template (a base model often has none)."""
        return {name: getattr(tokenizer_of(model), "chat_template", None) for name, model in self}

    @property
    def n_layers(self) -> int:
        return int(self.base.cfg.n_layers)

    @property
    def shape(self) -> ModelShape:
        """The pair's :class:`ModelShape` (blocks and width; :func:`load_pair` made sure both models agree)."""
        d_mlp = getattr(self.base.cfg, "d_mlp", None)
        return ModelShape(self.n_layers, int(self.base.cfg.d_model), None if d_mlp is None else int(d_mlp))

    def __iter__(self) -> Iterator[tuple[str, object]]:
        """Iterate ``("base", model), ("post", model)``."""
        yield "base", self.base
        yield "post", self.post

    def info(self) -> dict:
        from .collection import model_info

        return {
            "base": model_info(self.base),
            "post": model_info(self.post),
            "vocab_sha256": vocab_digest(self.tokenizer),
            "chat_template": self.chat_template,
        }

    def format(
        self,
        prompts: PromptSet | Sequence[str],
        style: Style = "raw",
        *,
        system: str | None = None,
        add_generation_prompt: bool = True,
    ) -> PromptSet:
        """Format prompts as ``raw`` text or as one user chat turn.

        ``"chat"`` applies the post model's chat template (for both models, as
        published base-vs-chat comparisons do) with the assistant's turn opened
        (``add_generation_prompt``), so the last tokens are the template's
        post-instruction tokens. The formatted text includes any BOS the
        template writes; :func:`interp.collect`'s BOS policy then adds no
        second one.

        Raises:
            TypeError: ``prompts`` is a single string (wrap one prompt in a list).
            ValueError: an unknown ``style``, or ``"chat"`` without a chat template.
        """
        if isinstance(prompts, (str, bytes)):
            raise TypeError("prompts must be a list of texts or a PromptSet, not a single string; wrap one prompt "
                            "in a list: pair.format([text], style)")
        if not isinstance(prompts, PromptSet):
            prompts = PromptSet(name="prompts", texts=tuple(prompts))
        if style == "raw":
            return prompts
        if style != "chat":
            raise ValueError(f"style must be 'raw' or 'chat', got {style!r}")
        if not self.chat_template:
            raise ValueError(
                "the post model's tokenizer has no chat template, so prompts cannot be formatted "
                "as chat turns; use style='raw' or set pair.chat_template"
            )
        tok = self.tokenizer

        def render(text: str) -> str:
            messages = ([{"role": "system", "content": system}] if system else []) + [
                {"role": "user", "content": text}
            ]
            return tok.apply_chat_template(
                messages, chat_template=self.chat_template, tokenize=False,
                add_generation_prompt=add_generation_prompt,
            )

        return prompts.map_texts(render)


def read_shape(base: str | os.PathLike | None = None, post: str | os.PathLike | None = None) -> ModelShape | None:
    """The :class:`ModelShape` of the pair :func:`load_pair` would boot from ``base`` and ``post``, read from the
    models' ``config.json`` alone (a local folder, a hub model's cached config, the bundled organism, the real-base
    organism's folders), so that options depending on the model are refused in a second rather than after
    the boot. Nothing is downloaded and no weights are read.

    ``None`` when that cannot be done without the boot's own work: a hub model not in the local cache, a ``.gguf``
    file (its header holds the whole vocabulary: reading it takes as long as half a boot), an unreadable config,
    two models of different shapes. :func:`load_pair` then reports what is wrong, and the booted pair's
    :attr:`ModelPair.shape` is used.
    """
    try:
        if base is None and post is None:
            from . import organism

            sources = organism.paths()
        elif post is None and isinstance(base, str) and base in _organism_presets():
            from .organism import gemma_paths

            sources = gemma_paths()  # the boot's first step (converted once, cached: then a fraction of a second)
        elif base is None or post is None:
            return None
        else:
            sources = (base, post)
        if any(str(s).lower().endswith(".gguf") for s in sources):
            return None
        shapes = {_config_shape(source) for source in sources}
    except Exception as e:  # noqa: BLE001 - anything unreadable here is reported by the boot, with its own message
        log.debug("could not read the pair's shape before booting it: %s: %s", type(e).__name__, e)
        return None
    return shapes.pop() if len(shapes) == 1 and None not in shapes else None


def _config_shape(source) -> ModelShape | None:
    """One model's :class:`ModelShape` from its ``config.json`` (``None`` when it lacks the fields)."""
    from transformers import AutoConfig

    path = Path(str(source)).expanduser()
    config = AutoConfig.from_pretrained(str(path) if path.is_dir() else str(source), local_files_only=True)
    config = config.get_text_config()
    n, d = getattr(config, "num_hidden_layers", None), getattr(config, "hidden_size", None)
    if n is None or d is None:
        return None
    # the MLP's width under the names the families use (GPT-2: n_inner, None meaning 4 * d_model; OPT: ffn_dim)
    d_mlp = getattr(config, "intermediate_size", None) or getattr(config, "ffn_dim", None)
    if d_mlp is None and getattr(config, "model_type", None) == "gpt2":
        d_mlp = getattr(config, "n_inner", None) or 4 * int(d)
    return ModelShape(int(n), int(d), None if d_mlp is None else int(d_mlp))


def _organism_presets() -> tuple[str, ...]:
    from .organism import PRESETS

    return PRESETS


def load_pair(
    base: str | os.PathLike | None = None,
    post: str | os.PathLike | None = None,
    *,
    device: str | torch.device | None = None,
    dtype: torch.dtype | str = torch.float32,
    revision: str | None = None,
    post_revision: str | None = None,
    trust_remote_code: bool = False,
    device_map: str | dict | None = None,
    n_devices: int | None = None,
    **boot_kwargs,
) -> ModelPair:
    """Boot a base model and its post-trained version with identical settings.

    Args:
        base, post: hub ids, local folders or local ``.gguf`` files. With
            neither given, the bundled model organism pair is booted; with
            ``base="gemma-270m-organism"`` alone, the real-base organism
            (google/gemma-3-270m and its LoRA post-trained version, see
            ``docs/organism.md``; needs the ``real`` extra).
        device, dtype, trust_remote_code, device_map, n_devices, **boot_kwargs:
            as in :func:`load_model`, applied identically to both models (each
            model is sharded on its own; ``device_map="auto"`` places both).
        revision, post_revision: hub revisions of the base and post model.

    Raises:
        ValueError: the two models differ in vocabulary, depth or width; a preset name given with a
            second model; an empty model name ("model source is empty"), an unknown dtype name or a
            non-floating dtype (these before either model boots).
        TypeError: ``dtype`` neither a torch dtype nor a name.

    Warns:
        UserWarning: ``base`` and ``post`` resolve to the same model folder (a model compared with itself
            shows no base/post differences).

    Example:
        >>> pair = load_pair("Qwen/Qwen2.5-0.5B", "Qwen/Qwen2.5-0.5B-Instruct")  # doctest: +SKIP
    """
    preset = None
    for name in (base, post):
        if isinstance(name, str) and name in _organism_presets() and (post is not None or name is post):
            raise ValueError(f"{name!r} names a whole pair (base and post); give it alone as base: "
                             f"load_pair({name!r}) / interp compare --base {name}")
    if base is None and post is None:
        from . import organism

        base, post = organism.paths()
    elif post is None and isinstance(base, str) and base in _organism_presets():
        from . import organism

        preset, (base, post) = base, organism.gemma_paths()
    elif base is None or post is None:
        raise ValueError("give both base and post, neither for the bundled model organism pair, or "
                         "base='gemma-270m-organism' alone for the real-base organism")
    _check_source(base, "base model source")
    _check_source(post, "post model source")
    kw = dict(device=device, dtype=float_dtype(dtype), trust_remote_code=trust_remote_code, device_map=device_map,
              n_devices=n_devices, **boot_kwargs)
    base_model = load_model(base, revision=revision, **kw)
    post_model = load_model(post, revision=post_revision, **kw)
    path = base_model.interp_source["path"]
    if path == post_model.interp_source["path"]:
        import warnings

        warnings.warn(f"base and post are the same model folder ({path}): a model compared with itself shows no "
                      "base/post differences; pass the post-trained model as post", stacklevel=2)
    if preset is not None:  # name the cached folders for what they are (reports, manifests)
        base_model.interp_source["name"] = f"{preset} base: google/gemma-3-270m"
        post_model.interp_source["name"] = f"{preset} post: google/gemma-3-270m + LoRA (interp/organism/gemma_lora)"
    return pair_of(base_model, post_model)


def pair_of(base_model, post_model) -> ModelPair:
    """A :class:`ModelPair` of two booted models (e.g. one reference model paired with each checkpoint of a
    series in turn), checked as :func:`load_pair` checks them; the chat template is the post model's.

    Raises:
        ValueError: the two models differ in vocabulary, depth or width.
    """
    check_same_tokenizer(tokenizer_of(base_model), tokenizer_of(post_model))
    for key in ("n_layers", "d_model"):
        a, b = getattr(base_model.cfg, key), getattr(post_model.cfg, key)
        if a != b:
            raise ValueError(f"base and post differ in {key} ({a} vs {b}); they are not a base/post-trained pair")
    template = getattr(tokenizer_of(post_model), "chat_template", None)
    return ModelPair(base=base_model, post=post_model, chat_template=template)
