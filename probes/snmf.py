"""Semi-nonnegative matrix factorization of MLP activations (Shafran, Geiger & Geva 2025).

"Decomposing MLP activations into interpretable features via semi-nonnegative
matrix factorization": the MLP hidden activations of every token of a prompt
set form a neurons x tokens matrix ``A``, factorized as ``A ≈ F G`` with ``F``
(neurons x k, signed) the features and ``G`` (k x tokens, nonnegative) how much
each token uses each feature. Each iteration:

1. ``F = A Gᵀ (G Gᵀ + λI)⁻¹`` — least squares given ``G`` with a small ridge;
2. each column of ``F`` keeps only its top ``sparsity`` fraction of neurons by
   magnitude (default 1%);
3. each row of ``G`` is scaled to unit norm and the scale moved into ``F``;
4. ``G ← G ∘ sqrt(([FᵀA]⁺ + [FᵀF]⁻ G) / ([FᵀA]⁻ + [FᵀF]⁺ G))`` — the
   multiplicative update of Ding, Li & Jordan (2010), "Convex and semi-nonnegative
   matrix factorizations", with ``X⁺ = (|X| + X)/2``, ``X⁻ = (|X| - X)/2``;
5. the reconstruction error ``‖A - FG‖²`` is tracked and the best iterate kept;
   fitting stops when the relative improvement stays below ``tol`` for
   ``patience`` iterations, or after ``max_iter``.

Everything runs in torch (float32 on the estimator's device). The data is read
in token chunks, one pass per iteration: ``FᵀA`` of a chunk updates that chunk's
coefficients, and ``A Gᵀ``, ``G Gᵀ`` and the error are accumulated in the same
pass (the error as ``‖A‖² - 2 tr(FᵀAGᵀ) + tr(FᵀF GGᵀ)``, never forming
``A - FG``). ``FᵀA`` uses ``F``'s sparsity. So ``fit`` accepts a dense matrix
or any re-iterable source of ``[n_tokens, n_neurons]`` chunks (e.g.
:class:`SafetensorsChunks` over shards on disk), and only ``G``
(k x tokens) is held in memory.

``dtype="bfloat16"`` holds the activations in bfloat16 (half the memory; exact
for activations read from a bfloat16 model). ``A Gᵀ`` is then a bfloat16
product (the large one, at about 2.6x the float32 speed on an AVX-512-BF16 CPU),
taken against ``P G`` with ``P`` the inverse of the expected Gram matrix so that
rounding its output is not amplified by ``(GGᵀ)⁻¹`` (see ``_fit``). ``FᵀA``
gathers the bfloat16 rows each feature uses and multiplies them in float32, so
the error, which cancels most of ``‖A‖²``, stays exact. The features are rounded
to bfloat16 each iteration (the values that multiply the data, and the ones
returned). ``G``, ``G Gᵀ``, the solve and the update stay float32. On
``bench/snmf.py`` (2,048 neurons x 40,000 tokens, k=64) it reaches the float64
error to 3.5e-5 relative (float32: 3e-8; NumPy float32: 6e-4).

Layout follows scikit-learn: ``X`` is ``[n_tokens, n_neurons]``;
``components_`` is ``Fᵀ`` (``[k, n_neurons]``); ``transform`` returns ``Gᵀ``.

>>> import torch
>>> g = torch.Generator().manual_seed(0)
>>> F = torch.zeros(40, 3)                     # 3 planted features of 4 neurons each
>>> for j in range(3): F[4 * j : 4 * j + 4, j] = torch.randn(4, generator=g)
>>> G = torch.rand(3, 500, generator=g)        # nonnegative usage per token
>>> model = SNMF(3, sparsity=0.1, random_state=0).fit((F @ G).T)
>>> rows, cols, cos = match_features(F.T.numpy(), model.components_)
>>> model.components_.shape, bool(cos.min() > 0.99)
((3, 40), True)
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable

import numpy as np
import torch
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import check_is_fitted
from interp._progress import tqdm

from ._checks import check_integer, check_number

__all__ = ["SNMF", "SafetensorsChunks", "feature_usage", "match_features"]

_EPS = 1e-12


def _pos(x):
    return x.clamp_min(0)


def _neg(x):
    return (-x).clamp_min(0)


_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}
_TOKEN_BLOCK = 8192  # tokens per block where bfloat16 data is read piecewise on CPU (the pieces stay in L2)
_GPU_BLOCK_BYTES = 1 << 28  # on a GPU, the bfloat16 sparse product gathers blocks of up to 256 MiB


def _mm(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``a @ b`` as float32, multiplied in the lower of the two precisions (bfloat16 data stays bfloat16)."""
    if a.dtype != b.dtype:
        low = torch.bfloat16 if torch.bfloat16 in (a.dtype, b.dtype) else torch.float32
        a, b = a.to(low), b.to(low)
    return (a @ b).float()


def _feature_product(F: torch.Tensor, keep: int, workspace: dict | None = None):
    """A function ``A -> FᵀA`` (float32 ``[k, n_tokens]``) for ``A`` of either dtype, using that each
    column of ``F`` (``[n_neurons, k]``) has at most ``keep`` nonzeros.

    float32: a CSR product. bfloat16 (no sparse bfloat16 kernels on CPU), on CPU: for each rank
    ``r < keep``, the ``r``-th neuron of every feature is gathered (one ``[k, tokens]`` row block) and
    accumulated with its weight into a float32 result, block by block of tokens so the gathered rows
    and the partial result stay in cache. On a GPU, where ``keep`` small kernels per block cost more
    than memory traffic: all ``k x keep`` rows of a block are gathered at once, widened to float32
    and combined by one batched product (blocks of up to 256 MiB). Products and sums are float32
    either way: a bfloat16 output would round ``FᵀA`` to 2^-9, and the error
    ``‖A‖² - 2 tr(FᵀAGᵀ) + ...`` cancels most of ``‖A‖²``.
    ``workspace``: a dict kept across calls to hold the gather buffers.
    """
    n, k = F.shape
    if keep >= n / 4:  # dense is as fast and simpler; bfloat16 data is widened block by block (exact FᵀA)
        def dense(A, out=None):
            if A.dtype == torch.float32:
                return F.T @ A
            return torch.cat([F.T @ A[:, s : s + _TOKEN_BLOCK].float() for s in range(0, A.shape[1], _TOKEN_BLOCK)], 1)

        return dense
    csr: list[torch.Tensor] = []  # Fᵀ as CSR, built on the first float32 call only
    idx = F.abs().topk(keep, dim=0).indices  # [keep, k]: row r holds the r-th neuron of every feature
    vals = F.gather(0, idx)[:, :, None]  # [keep, k, 1]
    workspace = {} if workspace is None else workspace

    def by_block(A, out):  # GPU: one gather, one widening and one batched product per block
        step = max(1, _GPU_BLOCK_BYTES // (6 * k * keep))
        size = k * keep * min(step, A.shape[1])
        if workspace.get("size", 0) < size or workspace["low"].dtype != A.dtype or workspace["low"].device != A.device:
            workspace.update(size=size, low=torch.empty(size, dtype=A.dtype, device=A.device),
                             high=torch.empty(size, device=A.device))
        rows, w = idx.T.flatten(), vals.permute(1, 2, 0)  # [k * keep] feature-major, [k, 1, keep]
        for s in range(0, A.shape[1], step):
            block = A[:, s : s + step]
            m = k * keep * block.shape[1]
            gathered = workspace["low"][:m].view(k * keep, block.shape[1])
            torch.index_select(block, 0, rows, out=gathered)
            wide = workspace["high"][:m].view(k, keep, -1).copy_(gathered.view(k, keep, -1))
            out[:, s : s + step] = torch.bmm(w, wide)[:, 0]
        return out

    def product(A, out=None):
        if A.dtype == torch.float32:
            if not csr:
                csr.append(_csr(F.T))
            return csr[0] @ A if out is None else torch.mm(csr[0], A, out=out)
        n_tok = A.shape[1]
        out = torch.empty(k, n_tok, device=A.device) if out is None else out
        if A.device.type != "cpu":
            return by_block(A, out)
        step = _TOKEN_BLOCK
        buf = workspace.get("gather")
        if buf is None or buf.numel() < k * step or buf.dtype != A.dtype or buf.device != A.device:
            buf = workspace["gather"] = torch.empty(k * step, dtype=A.dtype, device=A.device)
        for s in range(0, n_tok, step):
            block = A[:, s : s + step]
            rows = buf[: k * block.shape[1]].view(k, block.shape[1])
            part = out[:, s : s + step]
            torch.index_select(block, 0, idx[0], out=rows)
            torch.mul(rows, vals[0], out=part)
            for r in range(1, keep):
                torch.index_select(block, 0, idx[r], out=rows)
                part.addcmul_(rows, vals[r])
        return out

    return product


def _csr(x: torch.Tensor) -> torch.Tensor:
    """Sparse CSR copy of ``x``: sparse x dense products with it are fast on CPU and GPU (COO is not)."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "sparse CSR support is in beta"
        return x.to_sparse_csr()


class _Chunks:
    """A re-iterable list of ``[n_neurons, n_tokens]`` tensors (``dtype``) on the device."""

    def __init__(self, X, device, chunk_size: int | None, dtype: torch.dtype = torch.float32):
        self.device, self.dtype = device, dtype
        if isinstance(X, (torch.Tensor, np.ndarray)):
            if isinstance(X, np.ndarray) and not X.flags.writeable:
                X = X.copy()  # torch cannot wrap read-only arrays; the data is copied below anyway
            X = torch.as_tensor(X)
            if X.ndim != 2:
                raise ValueError(f"X must be [n_tokens, n_neurons], got shape {tuple(X.shape)}")
            step = chunk_size or X.shape[0] or 1
            # transposed once into contiguous [neurons, tokens] chunks (one copy of the data), so every
            # pass multiplies contiguous matrices
            self.source = [self._transposed(X[i : i + step].to(device)) for i in range(0, X.shape[0], step)]
            self.transposed = True
            return
        if isinstance(X, Iterable):
            self.source = X
            self.transposed = False
        else:
            raise TypeError(f"X must be an array, a tensor or an iterable of [n_tokens, n_neurons] chunks, got "
                            f"{type(X).__name__}")

    def _transposed(self, chunk: torch.Tensor) -> torch.Tensor:
        if chunk.dtype == self.dtype:
            return chunk.T.contiguous()
        # converted and transposed in one pass, never holding a converted untransposed copy
        return torch.empty(chunk.shape[::-1], dtype=self.dtype, device=chunk.device).copy_(chunk.T)

    def __iter__(self):
        if self.transposed:
            yield from self.source
            return
        for chunk in self.source:
            chunk = torch.as_tensor(chunk)
            if chunk.ndim != 2:
                raise ValueError(f"each chunk must be [n_tokens, n_neurons], got shape {tuple(chunk.shape)}")
            yield chunk.to(self.device, self.dtype).T  # [neurons, tokens]


class SafetensorsChunks:
    """Re-iterable chunks read one file at a time: tensor ``key`` (``[n_tokens, n_neurons]``) of each
    safetensors file in ``paths``, for fitting on more tokens than fit in memory."""

    def __init__(self, paths, key: str = "X"):
        self.paths, self.key = [str(p) for p in paths], key

    def __iter__(self):
        from safetensors import safe_open

        for path in self.paths:
            with safe_open(path, framework="pt") as f:
                yield f.get_tensor(self.key)


def _is_chunk_source(X) -> bool:
    """A re-iterable of chunks, as opposed to one array-like matrix."""
    import scipy.sparse as sp

    return (isinstance(X, Iterable) and not isinstance(X, (np.ndarray, list, tuple, torch.Tensor, str))
            and not sp.issparse(X) and not hasattr(X, "__array__"))


class SNMF(TransformerMixin, BaseEstimator):
    """Semi-NMF ``X.T ≈ F G`` with sparse signed features ``F`` and nonnegative coefficients ``G``.

    Args:
        n_components: number of features ``k``.
        sparsity: fraction of neurons each feature keeps (top by magnitude); 1.0 keeps all.
        max_iter, tol, patience: stop after ``max_iter`` iterations, or when the
            relative decrease of the error stays below ``tol`` ``patience`` times in a row.
        init: ``"svd"`` (top singular vectors, signed so coefficients start
            nonnegative), ``"kmeans"`` (cluster centroids and memberships + 0.2,
            as Ding et al.), or ``"random"``.
        ridge: ridge of the least-squares step, relative to ``trace(GGᵀ)/k``.
        device: torch device (default: CUDA when available, else CPU).
        dtype: ``"float32"``, or ``"bfloat16"`` to hold the activations in bfloat16 (half the
            memory; about 1.5x faster per iteration on a 2-core AVX-512-BF16 CPU; see the
            module docstring for what is rounded and what stays exact).
        chunk_size: tokens per chunk when ``X`` is one matrix (default: all at once).
        transform_iter: multiplicative updates of ``transform`` (coefficients for new data).
        verbose: show a progress bar with the error of each iteration. Interrupting a fit
            (Ctrl-C) keeps the best completed iterate in the estimator, then re-raises.
        random_state: seed for ``"random"`` and ``"kmeans"`` initialisation.

    Attributes:
        components_: ``[k, n_neurons]`` features (``Fᵀ``), rows sparse.
        reconstruction_err_: Frobenius norm ``‖A - FG‖`` of the best iterate.
        n_iter_, best_iter_: iterations run, and the one kept.
        history_: error (Frobenius norm) after each iteration.
    """

    def __init__(self, n_components: int = 32, *, sparsity: float = 0.01, max_iter: int = 200, tol: float = 1e-4,
                 patience: int = 10, init: str = "svd", ridge: float = 1e-6, device: str | None = None,
                 dtype: str = "float32", chunk_size: int | None = None, transform_iter: int = 200,
                 random_state: int | None = None, verbose: bool = False):
        self.n_components = n_components
        self.sparsity = sparsity
        self.max_iter = max_iter
        self.tol = tol
        self.patience = patience
        self.init = init
        self.ridge = ridge
        self.device = device
        self.dtype = dtype
        self.chunk_size = chunk_size
        self.transform_iter = transform_iter
        self.random_state = random_state
        self.verbose = verbose

    # ---------------------------------------------------------------- checks
    def _device(self):
        return torch.device(self.device or ("cuda" if torch.cuda.is_available() else "cpu"))

    def _check_params(self):
        if not isinstance(self.n_components, (int, np.integer)) or self.n_components < 1:
            raise ValueError(f"n_components must be a positive integer, got {self.n_components!r}")
        if not 0 < self.sparsity <= 1:
            raise ValueError(f"sparsity must be in (0, 1], got {self.sparsity}")
        if self.init not in ("svd", "kmeans", "random"):
            raise ValueError(f"init must be 'svd', 'kmeans' or 'random', got {self.init!r}")
        check_integer("max_iter", self.max_iter, 1)
        check_integer("patience", self.patience, 1)
        check_integer("transform_iter", self.transform_iter, 0)
        check_number("tol", self.tol, lambda t: t >= 0, "a finite number >= 0")
        check_number("ridge", self.ridge, lambda r: r >= 0, "a finite number >= 0")
        if self.chunk_size is not None:
            check_integer("chunk_size", self.chunk_size, 1)
        if self.dtype not in _DTYPES:
            raise ValueError(f"dtype must be 'float32' or 'bfloat16', got {self.dtype!r}")

    def _chunks(self, X) -> _Chunks:
        return _Chunks(X, self._device(), self.chunk_size, _DTYPES[self.dtype])

    def _validate(self, X, reset: bool):
        """Tensors and chunk sources pass through; anything else goes through scikit-learn's checks."""
        if isinstance(X, torch.Tensor) or _is_chunk_source(X):
            return X
        from sklearn.utils.validation import validate_data

        return validate_data(self, X, reset=reset, dtype=[np.float32, np.float64], ensure_min_samples=1)

    # ------------------------------------------------------------------ init
    def _initialize(self, chunks, n_neurons: int, k: int, gen):
        dev = self._device()
        if self.init == "svd":
            # top-k left singular vectors by a randomized range finder with one power iteration,
            # in passes over the chunks (never forming A Aᵀ): Halko, Martinsson & Tropp (2011)
            p = min(k + 10, n_neurons)
            Y = torch.zeros(n_neurons, p, device=dev)
            for A in chunks:
                Y += _mm(A, torch.randn(A.shape[1], p, generator=gen).to(dev))
            Q = torch.linalg.qr(Y).Q
            Z = torch.zeros_like(Q)
            for A in chunks:
                Z += _mm(A, _mm(A.T, Q))
            Q = torch.linalg.qr(Z).Q
            M = torch.zeros(Q.shape[1], Q.shape[1], device=dev, dtype=torch.float64)
            for A in chunks:
                B = _mm(Q.T, A).double()
                M += B @ B.T
            _, V = torch.linalg.eigh(M)
            U = Q @ V[:, -k:].flip(-1).float()
            Gs = [_mm(U.T, A) for A in chunks]
            sign = torch.sign(sum(g.sum(1) for g in Gs))
            sign[sign == 0] = 1
            F = U * sign
            Gs = [(g * sign[:, None]).clamp_min(0) + 1e-4 for g in Gs]
            return F, Gs
        if self.init == "kmeans":
            from sklearn.cluster import MiniBatchKMeans

            km = MiniBatchKMeans(n_clusters=k, random_state=self.random_state, n_init=3, batch_size=1024)
            for A in chunks:
                km.partial_fit(A.T.cpu().double().numpy())
            F = torch.tensor(km.cluster_centers_.T, dtype=torch.float32, device=dev)
            Gs = []
            for A in chunks:
                lab = torch.as_tensor(km.predict(A.T.cpu().double().numpy()), device=dev).long()
                Gs.append(torch.nn.functional.one_hot(lab, k).T.float() + 0.2)
            return F, Gs
        Gs = [torch.rand(k, A.shape[1], generator=gen, device="cpu").to(dev) + 1e-4 for A in chunks]
        return None, Gs

    def initial_coefficients(self, X) -> np.ndarray:
        """The coefficients ``Gᵀ`` (``[n_tokens, k]``) that ``fit`` starts from with this ``init``."""
        self._check_params()
        chunks = self._chunks(X)
        n_neurons = next(iter(chunks)).shape[0]
        gen = torch.Generator().manual_seed(0 if self.random_state is None else int(self.random_state))
        _, Gs = self._initialize(chunks, n_neurons, int(self.n_components), gen)
        return torch.cat(Gs, 1).T.cpu().numpy()

    # ------------------------------------------------------------------- fit
    def fit(self, X, y=None, coefficients=None):
        """Factorize ``X`` (``[n_tokens, n_neurons]``, or re-iterable chunks of it).

        ``coefficients``: optional starting ``Gᵀ`` (``[n_tokens, k]``, nonnegative)
        instead of ``init``.

        Warns (``RuntimeWarning``) where fitted features are zero (norm at most 1e-6 of the largest feature's: no
        token uses them, e.g. the data has fewer than ``k`` directions): they carry nothing.

        Raises:
            ValueError: a parameter out of range (``n_components``, ``sparsity``, ``init``, ``max_iter``,
                ``patience``, ``transform_iter``, ``tol``, ``ridge``, ``chunk_size``, ``dtype``), ``X`` with no
                tokens, NaN or inf, all zeros (nothing to factorize), or ``n_components`` above
                ``min(n_neurons, n_tokens)``, chunks that disagree on the number of neurons, or
                ``coefficients`` not finite, nonnegative and ``[n_tokens, k]``.
            TypeError: an integer parameter that is not an integer, or ``tol``/``ridge`` not a number.
        """
        self._fit(X, coefficients)
        return self

    def fit_transform(self, X, y=None, coefficients=None):
        """Fit and return the training coefficients ``Gᵀ`` (``[n_tokens, k]``)."""
        Gs = self._fit(X, coefficients)
        return torch.cat(Gs, 1).T.cpu().numpy()

    def _fit(self, X, coefficients=None) -> list[torch.Tensor]:
        self._check_params()
        X = self._validate(X, reset=True)
        dev = self._device()
        chunks = self._chunks(X)
        norm_sq, n_tokens, n_neurons = 0.0, 0, None
        for A in chunks:
            if n_neurons is not None and A.shape[0] != n_neurons:
                raise ValueError(f"chunks disagree on the number of neurons: {n_neurons} and {A.shape[0]}")
            n_neurons = A.shape[0]
            n_tokens += A.shape[1]
            # float32 rows (pairwise sums; bfloat16 data is squared in float32), float64 total
            for s in range(0, A.shape[1], _TOKEN_BLOCK):  # in blocks: no float32 copy of bfloat16 data
                block = A[:, s : s + _TOKEN_BLOCK]
                norm_sq += float(torch.linalg.vector_norm(block, dim=1, dtype=torch.float32).pow(2).double().sum())
        if not n_tokens:
            raise ValueError("X has no tokens")
        if not math.isfinite(norm_sq):  # a NaN or inf anywhere makes the sum of squares non-finite
            raise ValueError("X contains NaN or inf")
        if norm_sq == 0:
            raise ValueError("X is all zeros: there is nothing to factorize (every feature would be zero)")
        k = int(self.n_components)
        if k > min(n_neurons, n_tokens):
            raise ValueError(f"n_components={k} exceeds min(n_neurons, n_tokens) = {min(n_neurons, n_tokens)}")
        self.n_features_in_ = n_neurons
        keep = max(1, math.ceil(self.sparsity * n_neurons))
        gen = torch.Generator().manual_seed(0 if self.random_state is None else int(self.random_state))
        if coefficients is None:
            _, Gs = self._initialize(chunks, n_neurons, k, gen)
        else:
            G0 = torch.as_tensor(np.asarray(coefficients), dtype=torch.float32, device=dev)
            if G0.shape != (n_tokens, k) or (G0 < 0).any() or not torch.isfinite(G0).all():
                raise ValueError(f"coefficients must be finite, nonnegative and [{n_tokens}, {k}], "
                                 f"got shape {tuple(G0.shape)}")
            sizes = [A.shape[1] for A in chunks]
            Gs = [g.T.clone(memory_format=torch.contiguous_format) for g in torch.split(G0, sizes)]  # never alias
        low = _DTYPES[self.dtype] != torch.float32

        # A Gᵀ is accumulated in the pass that updates G. In bfloat16 the product's output is rounded
        # (relative 2^-9), and F = A Gᵀ (GGᵀ + λI)⁻¹ would amplify that by the Gram matrix's condition
        # number (hundreds: nonnegative rows are correlated). So bfloat16 accumulates C = A Gᵀ P with
        # P = R⁻¹, R the Gram matrix G is expected to have (the last one, for unit rows), and recovers
        # A Gᵀ = C R: the rounding then costs about 2^-9 of F, not 2^-9 x cond.
        low_bufs: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}  # P G in float32 and bfloat16, reused

        def accumulate(AGt, A, G, P):
            if A.dtype == torch.float32:
                AGt.addmm_(A, G.T)
                return
            if G.shape[1] not in low_bufs:
                low_bufs[G.shape[1]] = (torch.empty_like(G), torch.empty_like(G, dtype=A.dtype))
            pg, pg_low = low_bufs[G.shape[1]]
            pg_low.copy_(torch.mm(P, G, out=pg))
            AGt += A @ pg_low.T

        def ridged(GGt):
            return GGt + (self.ridge * float(GGt.diagonal().sum()) / k + _EPS) * torch.eye(k, device=dev)

        def inverse(R):
            return torch.linalg.inv(R.double()).float() if low else None

        GGt = torch.zeros(k, k, device=dev)
        for G in Gs:
            GGt += G @ G.T
        R = ridged(GGt)
        P = inverse(R)
        AGt = torch.zeros(n_neurons, k, device=dev)
        for A, G in zip(chunks, Gs):
            accumulate(AGt, A, G, P)
        if low:
            AGt = AGt @ R
        best = (math.inf, None, None, 0)
        # the best iterate's G is copied into one of two buffers, not re-allocated, on each improvement;
        # two so that an interrupted copy never touches the best iterate kept so far
        best_G, spare_G = [torch.empty_like(g) for g in Gs], [torch.empty_like(g) for g in Gs]
        work: dict[int, tuple[torch.Tensor, ...]] = {}
        gather_space: dict = {}
        history, stall = [], 0
        bar = tqdm(total=self.max_iter, desc="SNMF", unit="it", disable=not self.verbose, leave=False)
        interrupted = False
        try:
            for it in range(1, self.max_iter + 1):
                # 1. least squares for F; 2. sparsify its columns; 3. unit coefficient rows, scale into F
                R = ridged(GGt)
                F = torch.linalg.solve(R, AGt.T).T
                if keep < n_neurons:
                    idx = F.abs().topk(keep, dim=0).indices
                    F = torch.zeros_like(F).scatter_(0, idx, F.gather(0, idx))
                scale = GGt.diagonal().clamp_min(0).sqrt()
                scale = torch.where(scale > _EPS, scale, torch.ones_like(scale))
                F = F * scale
                if low:  # the features multiply bfloat16 data as bfloat16: keep exactly those values
                    F = F.to(torch.bfloat16).float()
                    R = R / scale[:, None] / scale[None, :]  # the Gram matrix of the unit rows, before the update
                    P = inverse(R)
                features_times = _feature_product(F, keep, gather_space)
                FtF = F.T @ F
                FtF_negpos = torch.cat([_neg(FtF), _pos(FtF)])  # one [2k, k] product per chunk for both terms
                # 4. multiplicative update of each chunk's coefficients, accumulating the next F step and the error
                AGt.zero_()
                GGt.zero_()
                cross = 0.0
                for c, A in enumerate(chunks):
                    # work buffers are reused across iterations: fresh large tensors each time would cost
                    # more in page faults than the arithmetic on them
                    n_c = A.shape[1]
                    if n_c not in work:
                        work[n_c] = (torch.empty(k, n_c, device=dev), torch.empty(2 * k, n_c, device=dev),
                                     torch.empty(k, n_c, device=dev))
                    fta, mixed, tmp = work[n_c]
                    G = Gs[c].div_(scale[:, None])
                    FtA = features_times(A, out=fta)
                    torch.mm(FtF_negpos, G, out=mixed)  # [2k, n_c]: contiguous halves for the elementwise steps
                    num, den = mixed[:k], mixed[k:]
                    torch.clamp_min(FtA, 0, out=tmp)  # [FᵀA]⁺
                    num.add_(tmp)
                    den.add_(tmp.sub_(FtA)).add_(_EPS)  # [FᵀA]⁻ = [FᵀA]⁺ - FᵀA
                    G.mul_(num.div_(den).sqrt_())
                    accumulate(AGt, A, G, P)
                    GGt.addmm_(G, G.T)
                    cross += float(torch.mul(FtA, G, out=tmp).sum(1).double().sum())
                if low:
                    AGt = AGt @ R
                err_sq = max(norm_sq - 2 * cross + float((FtF * GGt).sum()), 0.0)
                err = math.sqrt(err_sq)
                history.append(err)
                bar.update()
                bar.set_postfix(error=f"{err:.5g}", best=best[3] if err >= best[0] else it, refresh=False)
                if err < best[0]:
                    rel = (best[0] - err) / max(best[0], _EPS) if best[0] < math.inf else math.inf
                    for dst, g in zip(spare_G, Gs):
                        dst.copy_(g)
                    best_G, spare_G = spare_G, best_G
                    best = (err, F.clone(), best_G, it)
                    stall = stall + 1 if rel < self.tol else 0
                else:
                    stall += 1
                if stall >= self.patience:
                    break
        except KeyboardInterrupt:
            # nothing lost: the best completed iterate is kept (its G was copied when it was reached)
            interrupted = True
        finally:
            bar.close()
        if best[1] is None:
            if interrupted:
                raise KeyboardInterrupt("SNMF fit interrupted before its first iteration completed")
            raise FloatingPointError(f"SNMF reached no finite reconstruction error (history {history})")
        err, F, Gs, best_it = best
        self.components_ = F.T.contiguous().cpu().numpy()
        self.reconstruction_err_ = float(err)
        self.n_iter_ = len(history)
        self.best_iter_ = best_it
        self.history_ = history
        self._F = F
        norms = np.linalg.norm(self.components_, axis=1)
        dead = np.flatnonzero(norms <= 1e-6 * norms.max()).tolist()  # zero, to float32 rounding of the largest
        if dead:
            warnings.warn(f"SNMF: features {dead} of {k} are zero (no token uses them: the fit found nothing for "
                          "them to carry); lower n_components, or try another init or sparsity", RuntimeWarning,
                          stacklevel=3)
        if interrupted:
            raise KeyboardInterrupt(f"SNMF fit interrupted after {len(history)} iterations; the estimator keeps "
                                    f"the best one (iteration {best_it}, error {err:.5g}) and can be used")
        return Gs

    # ------------------------------------------------------------- transform
    def transform(self, X):
        """Nonnegative coefficients ``[n_tokens, k]`` of new activations against the fixed features.

        Nonnegative least squares ``min_G≥0 ‖A - FG‖`` solved with the same
        multiplicative update (monotone, converging for fixed ``F``), from the
        clipped least-squares solution.

        Raises:
            ValueError: ``X`` with no tokens, NaN or inf, or another number of neurons than the fit, or a
                parameter out of range (as :meth:`fit`).
        """
        check_is_fitted(self, "components_")
        self._check_params()
        X = self._validate(X, reset=False)
        dev = self._device()
        F = torch.as_tensor(self.components_, device=dev, dtype=torch.float32).T
        keep = max(1, int((F != 0).sum(0).max()))
        FtF = F.T @ F
        FtF_pos, FtF_neg = _pos(FtF), _neg(FtF)
        pinv = torch.linalg.pinv(F)
        out = []
        features_times = _feature_product(F, keep)
        for A in self._chunks(X):
            if A.shape[0] != F.shape[0]:
                raise ValueError(f"X has {A.shape[0]} neurons; the model was fitted on {F.shape[0]}")
            if not torch.isfinite(A).all():
                raise ValueError("X contains NaN or inf")
            FtA = features_times(A)
            G = _mm(pinv, A).clamp_min(0) + 1e-4
            for _ in range(self.transform_iter):
                G_new = G * torch.sqrt((_pos(FtA) + FtF_neg @ G) / (_neg(FtA) + FtF_pos @ G + _EPS))
                done = (G_new - G).abs().max() <= 1e-6 * G.abs().max().clamp_min(_EPS)
                G = G_new
                if done:
                    break
            out.append(G.T.cpu())
        if not out or not sum(len(o) for o in out):
            raise ValueError("X has no tokens")
        return torch.cat(out).numpy()

    def inverse_transform(self, G):
        """Reconstructed activations ``[n_tokens, n_neurons]`` from coefficients ``[n_tokens, k]``.

        Raises:
            ValueError: ``G`` not ``[n_tokens, k]`` for this fit's ``k``, or with NaN or inf.
        """
        check_is_fitted(self, "components_")
        G = np.asarray(G, dtype=np.float32)
        k = self.components_.shape[0]
        if G.ndim != 2 or G.shape[1] != k:
            raise ValueError(f"coefficients must be [n_tokens, k] = [n_tokens, {k}], got shape {G.shape}")
        if not np.isfinite(G).all():
            raise ValueError("coefficients contain NaN or inf")
        return G @ self.components_

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = False
        tags.transformer_tags.preserves_dtype = ["float32"]  # computes and returns float32
        return tags


def match_features(a, b) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One-to-one matching of two feature sets by cosine (Hungarian algorithm).

    Args:
        a, b: ``[k_a, n_neurons]`` and ``[k_b, n_neurons]`` (``components_`` of two fits
            on the same neurons, e.g. a base and a post model: fine-tuning keeps
            neuron indices).

    Returns:
        ``(rows, cols, cosines)``: feature ``rows[i]`` of ``a`` matches ``cols[i]``
        of ``b`` with cosine ``cosines[i]``; ``min(k_a, k_b)`` pairs maximizing the
        total cosine. Features left out of the matching are in neither list. A feature
        of norm 0 (or at most 1e-6 of its set's largest, e.g. an SNMF feature no token
        uses) has no direction, so its cosines are undefined: they are matched as they
        are (0, or rounding noise), with a ``RuntimeWarning`` naming the feature.

    Raises:
        ValueError: feature sets that are not ``[k, n_neurons]`` over the same neurons, or with NaN or inf.
    """
    from scipy.optimize import linear_sum_assignment

    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise ValueError(f"feature sets must be [k, n_neurons] over the same neurons, got {a.shape} and {b.shape}")
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        raise ValueError("feature sets contain NaN or inf")
    zero = {}
    for name, m in (("a", a), ("b", b)):  # norm 0, or at most 1e-6 of the set's largest: a direction of rounding
        norms = np.linalg.norm(m, axis=1)
        zero[name] = np.flatnonzero(norms <= 1e-6 * norms.max(initial=0.0)).tolist()
    if zero["a"] or zero["b"]:
        warnings.warn(f"match_features: features of norm 0 (a: {zero['a']}, b: {zero['b']}) have no direction; "
                      "their cosines are undefined (0 or rounding noise) and are matched as they are",
                      RuntimeWarning, stacklevel=2)
    na = a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), _EPS)
    nb = b / np.maximum(np.linalg.norm(b, axis=1, keepdims=True), _EPS)
    cos = na @ nb.T
    rows, cols = linear_sum_assignment(-cos)
    return rows, cols, cos[rows, cols]



def feature_usage(components, coefficients) -> np.ndarray:
    """How much each feature is used: the mean norm of its contribution to a token's activations.

    Feature ``j`` adds ``F_j g_jt`` to token ``t``'s activations (``g_jt ≥ 0``), so its mean contribution
    norm over the ``n`` tokens is ``‖F_j‖₂ · mean_t g_jt``, in the activations' units. The mean coefficient
    alone is not comparable across features: each fit moves every coefficient row's scale into ``F`` (step 3
    of the update), so a feature used strongly on few tokens reads as less used than one used weakly on
    many.

    Args:
        components: ``[k, n_neurons]`` features (``SNMF.components_``).
        coefficients: ``[n_tokens, k]`` nonnegative coefficients of those features (``fit_transform`` or
            ``transform``).

    Returns:
        ``[k]`` float64 usage.

    Raises:
        ValueError: shapes that do not agree, no tokens, NaN or inf in either, or negative coefficients.
    """
    F, G = np.asarray(components, dtype=np.float64), np.asarray(coefficients, dtype=np.float64)
    if F.ndim != 2 or G.ndim != 2 or G.shape[1] != F.shape[0] or G.shape[0] < 1:
        raise ValueError(f"components [k, n_neurons] and coefficients [n_tokens, k] with n_tokens >= 1 needed, "
                         f"got {F.shape} and {G.shape}")
    if not (np.isfinite(F).all() and np.isfinite(G).all()):
        raise ValueError("components or coefficients contain NaN or inf")
    if (G < 0).any():
        raise ValueError(f"coefficients must be nonnegative (SNMF's G), got a minimum of {float(G.min()):.3g}")
    return np.linalg.norm(F, axis=1) * G.mean(0)
