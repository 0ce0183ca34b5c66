"""Sparse encode/decode kernels for the TopK family (TopK, BatchTopK, Matryoshka).

A TopK-style SAE keeps ~k of m latents per sample, so after the dense encoder
matmul everything else can be sparse. The naive dense implementation spends as
long in the dense decoder and the dense encoder weight gradient as in the
encoder forward; these kernels make those parts O(B * k * d) instead of
O(B * m * d), in the spirit of sparsify's fused encoder.

Activations are passed around as a row-sorted COO code (`SparseCode`).

Precision: under a bfloat16 autocast (`saesanity.core.precision`) only the dense
selection GEMM runs in bf16; the selected values are handed on in float32, so the sparse
kernels, the decoder and every gradient stay float32, like the parameters.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from saesanity.core.precision import matmul_dtype

# Rows per chunk of the dense pre-activation matrix: keeps each (chunk x m) block
# small enough to stay in cache and below glibc's mmap threshold (a fresh 50 MB
# tensor costs ~25 ms of page faults per step on these CPUs).
PREACT_CHUNK_ROWS = 512
# Smallest k at which `row_topk` cuts the rows down before ATen's top-k (see there).
ROW_TOPK_MIN_K = 32


@dataclass
class SparseCode:
    """Active latents of a batch as row-sorted COO.

    rows[i] is the sample, latents[i] the latent and values[i] its activation;
    entries are sorted by row so `offsets` can feed `embedding_bag`.
    """

    rows: torch.Tensor
    latents: torch.Tensor
    values: torch.Tensor
    batch_size: int
    num_latents: int

    def offsets(self) -> torch.Tensor:
        counts = torch.bincount(self.rows, minlength=self.batch_size)
        return torch.cumsum(counts, 0) - counts

    def l0_per_sample(self) -> torch.Tensor:
        active = (self.values.detach() > 0).float()
        return torch.zeros(self.batch_size, device=active.device).index_add_(0, self.rows, active)

    def fired(self) -> torch.Tensor:
        """Boolean mask over latents: fired at least once in this batch."""
        mask = torch.zeros(self.num_latents, dtype=torch.bool, device=self.rows.device)
        mask[self.latents[self.values.detach() > 0]] = True
        return mask

    def dense(self) -> torch.Tensor:
        out = torch.zeros(self.batch_size, self.num_latents, device=self.values.device)
        out[self.rows, self.latents] = self.values.detach()
        return out

    def select(self, keep: torch.Tensor) -> SparseCode:
        """Sub-code with only the entries where `keep` is True (order preserved)."""
        return SparseCode(
            self.rows[keep],
            self.latents[keep],
            self.values[keep],
            self.batch_size,
            self.num_latents,
        )


def _transposed_sparse(code: SparseCode, weights: torch.Tensor) -> torch.Tensor:
    """The (num_latents x batch) sparse matrix with `weights` at the code's entries."""
    indices = torch.stack([code.latents, code.rows])
    return torch.sparse_coo_tensor(
        indices, weights, (code.num_latents, code.batch_size), check_invariants=False
    )


class _GatheredPreactivations(torch.autograd.Function):
    """values[i] = x_centered[rows[i]] . W_enc[latents[i]] + b_enc[latents[i]].

    The forward reuses values already computed by the dense selection pass; the
    backward touches only the selected entries: the encoder weight gradient is a
    sparse (m x B) @ (B x d) product instead of a dense (m x B) @ (B x d) GEMM.
    """

    @staticmethod
    def forward(ctx, x_centered, W_enc, b_enc, values, rows, latents, batch_size):
        ctx.save_for_backward(x_centered, W_enc, rows, latents)
        ctx.batch_size = batch_size
        return values.clone()

    @staticmethod
    def backward(ctx, grad_values):
        x_centered, W_enc, rows, latents = ctx.saved_tensors
        num_latents = W_enc.shape[0]
        grad_x = grad_W = grad_b = None
        code = SparseCode(rows, latents, grad_values, ctx.batch_size, num_latents)
        if ctx.needs_input_grad[0]:
            grad_x = F.embedding_bag(
                latents, W_enc, code.offsets(), mode="sum", per_sample_weights=grad_values
            )
        if ctx.needs_input_grad[1]:
            grad_W = torch.sparse.mm(_transposed_sparse(code, grad_values), x_centered)
        if ctx.needs_input_grad[2]:
            grad_b = torch.zeros(num_latents, dtype=grad_values.dtype, device=grad_values.device)
            grad_b.index_add_(0, latents, grad_values)
        return grad_x, grad_W, grad_b, None, None, None, None


class _SparseDecode(torch.autograd.Function):
    """x_hat[b] = sum_i values[i] * W_dec[latents[i]] over entries with rows[i] == b."""

    @staticmethod
    def forward(ctx, values, W_dec, rows, latents, offsets, batch_size):
        ctx.save_for_backward(values, W_dec, rows, latents, offsets)
        ctx.batch_size = batch_size
        return F.embedding_bag(latents, W_dec, offsets, mode="sum", per_sample_weights=values)

    @staticmethod
    def backward(ctx, grad_out):
        values, W_dec, rows, latents, offsets = ctx.saved_tensors
        grad_values = grad_W = None
        if ctx.needs_input_grad[0]:
            # d x_hat[b] / d values[i] = W_dec[latents[i]]: row-wise dot products with
            # grad_out[rows[i]]. ATen's kernel for embedding_bag's per-sample-weight
            # gradient does exactly this without materialising the (nnz x d) gathers.
            grad_values = torch.ops.aten._embedding_bag_per_sample_weights_backward(
                grad_out.contiguous(), W_dec, latents, offsets, rows, 0, -1
            )
        if ctx.needs_input_grad[1]:
            code = SparseCode(rows, latents, values, ctx.batch_size, W_dec.shape[0])
            grad_W = torch.sparse.mm(_transposed_sparse(code, values), grad_out)
        return grad_values, grad_W, None, None, None, None


def gathered_preactivations(
    x_centered: torch.Tensor, W_enc: torch.Tensor, b_enc: torch.Tensor, code: SparseCode
) -> torch.Tensor:
    """Differentiable pre-activations at the code's entries (values from the code)."""
    return _GatheredPreactivations.apply(
        x_centered, W_enc, b_enc, code.values, code.rows, code.latents, code.batch_size
    )


def sparse_decode(values: torch.Tensor, W_dec: torch.Tensor, code: SparseCode) -> torch.Tensor:
    """Decode a sparse code without the bias: sum of value-weighted decoder rows."""
    return _SparseDecode.apply(
        values, W_dec, code.rows, code.latents, code.offsets(), code.batch_size
    )


def _encoder_columns(W_enc: torch.Tensor) -> torch.Tensor:
    """W_enc as a contiguous (d x m) matrix (~2x faster GEMM on CPU than the transposed
    view), cast once to the dtype of the products here (bf16 inside a bf16 autocast)."""
    return W_enc.t().to(matmul_dtype(W_enc)).contiguous()


def row_topk(pre: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Each row's k largest values and their columns (in no particular order): the same
    set as `pre.topk(k, dim=1)` up to ties, about 2x faster on CPU at k 40 of 2,304.

    ATen's CPU top-k costs ~20 us per row of 2,304 at k 40, as much as half the encoder
    GEMM that made the row. A bound cuts the row down first: split it into ~2k groups;
    the k-th largest group maximum t has k entries >= t (the k maxima), so every top-k
    entry is >= t. The few entries >= t (~1.5-2k per row) are packed into a padded
    (B x C) matrix and the exact top-k is taken there. A row with fewer than k such
    entries (NaN) falls back to ATen.

    ATen's top-k is used as it is on other devices, for rows shorter than 8k, and below
    k = ROW_TOPK_MIN_K, where ATen is nearly as fast (k 20 of 3,200: under 1.2x): the
    order of the kept entries, and so the float rounding of everything summed over
    them, is then exactly what it was before this path existed.
    """
    rows_count, num = pre.shape
    group = num // (2 * k)
    if pre.device.type != "cpu" or k < ROW_TOPK_MIN_K or group < 4:
        return pre.topk(k, dim=1, sorted=False)
    full = (num // group) * group
    group_max = pre[:, :full].reshape(rows_count, -1, group).amax(2)
    if full < num:
        group_max = torch.cat([group_max, pre[:, full:].amax(1, keepdim=True)], 1)
    bound = group_max.topk(k, dim=1, sorted=False).values.amin(1, keepdim=True)
    rows, columns = (pre >= bound).nonzero(as_tuple=True)
    counts = torch.bincount(rows, minlength=rows_count)
    if int(counts.min()) < k:
        return pre.topk(k, dim=1, sorted=False)
    slot = torch.arange(len(rows), device=pre.device) - (torch.cumsum(counts, 0) - counts)[rows]
    width = int(counts.max())
    packed = pre.new_full((rows_count, width), float("-inf"))
    packed[rows, slot] = pre[rows, columns]
    packed_columns = torch.zeros((rows_count, width), dtype=torch.long, device=pre.device)
    packed_columns[rows, slot] = columns
    values, where = packed.topk(k, dim=1, sorted=False)
    return values, packed_columns.gather(1, where)


@torch.no_grad()
def select_topk(
    x_centered: torch.Tensor, W_enc: torch.Tensor, b_enc: torch.Tensor, k: int, relu: bool = True
) -> SparseCode:
    """Per-sample top-k of the pre-activations, ReLU applied to the kept values (without
    `relu`, the raw values: AuxK on pre-activations)."""
    batch_size, num_latents = x_centered.shape[0], W_enc.shape[0]
    values, latents = [], []
    encoder_columns = _encoder_columns(W_enc)
    for chunk in x_centered.split(PREACT_CHUNK_ROWS):
        pre = torch.addmm(b_enc, chunk, encoder_columns)
        chunk_values, chunk_latents = row_topk(pre, k)
        values.append((chunk_values.relu_() if relu else chunk_values).float())
        latents.append(chunk_latents)
    rows = torch.arange(batch_size, device=x_centered.device).repeat_interleave(k)
    return SparseCode(
        rows, torch.cat(latents).flatten(), torch.cat(values).flatten(), batch_size, num_latents
    )


@torch.no_grad()
def select_topk_positive(
    x_centered: torch.Tensor, W_enc: torch.Tensor, b_enc: torch.Tensor, k: int
) -> SparseCode:
    """The positive entries among each sample's top-k pre-activations (AuxK's code:
    ReLU'd zeros contribute nothing). A chunk whose rows have at most k positive
    entries each skips the top-k altogether, the common case once latents are dead."""
    batch_size, num_latents = x_centered.shape[0], W_enc.shape[0]
    rows, latents, values = [], [], []
    encoder_columns = _encoder_columns(W_enc)
    for start, chunk in zip(
        range(0, batch_size, PREACT_CHUNK_ROWS), x_centered.split(PREACT_CHUNK_ROWS), strict=True
    ):
        pre = torch.addmm(b_enc, chunk, encoder_columns)
        chunk_rows, chunk_latents = (pre > 0).nonzero(as_tuple=True)
        if len(chunk_rows) == 0 or torch.bincount(chunk_rows).max() <= k:
            chunk_values = pre[chunk_rows, chunk_latents]
        else:
            top_values, top_latents = pre.topk(k, dim=1, sorted=False)
            keep = top_values > 0
            chunk_rows = keep.nonzero(as_tuple=True)[0]
            chunk_latents, chunk_values = top_latents[keep], top_values[keep]
        rows.append(chunk_rows + start)
        latents.append(chunk_latents)
        values.append(chunk_values.float())
    return SparseCode(
        torch.cat(rows), torch.cat(latents), torch.cat(values), batch_size, num_latents
    )


@torch.no_grad()
def select_above(
    x_centered: torch.Tensor, W_enc: torch.Tensor, b_enc: torch.Tensor, threshold: torch.Tensor
) -> SparseCode:
    """All entries whose pre-activation exceeds `threshold` (scalar or per latent)."""
    batch_size, num_latents = x_centered.shape[0], W_enc.shape[0]
    rows, latents, values = [], [], []
    encoder_columns = _encoder_columns(W_enc)
    for start, chunk in zip(
        range(0, batch_size, PREACT_CHUNK_ROWS), x_centered.split(PREACT_CHUNK_ROWS), strict=True
    ):
        pre = torch.addmm(b_enc, chunk, encoder_columns)
        chunk_rows, chunk_latents = (pre > threshold).nonzero(as_tuple=True)
        rows.append(chunk_rows + start)
        latents.append(chunk_latents)
        values.append(pre[chunk_rows, chunk_latents].float())
    return SparseCode(
        torch.cat(rows), torch.cat(latents), torch.cat(values), batch_size, num_latents
    )


@torch.no_grad()
def select_batch_topk(
    x_centered: torch.Tensor,
    W_enc: torch.Tensor,
    b_enc: torch.Tensor,
    k: int,
    lower_bound_hint: float | None = None,
) -> SparseCode:
    """The k * B largest positive pre-activations of the whole batch (BatchTopK).

    A full top-(kB) over the B x m matrix is slow on CPU, so we first keep the
    candidates above a lower bound (a fraction of the last batch's cut-off,
    `lower_bound_hint`), then cut exactly among them. If the bound was too high
    to leave kB candidates we fall back to all positive entries, so the result
    is always the exact batch top-k.
    """
    target = k * x_centered.shape[0]
    bound = 0.0 if lower_bound_hint is None else max(0.0, lower_bound_hint)
    candidates = select_above(x_centered, W_enc, b_enc, torch.tensor(bound))
    if candidates.values.numel() < target and bound > 0.0:
        candidates = select_above(x_centered, W_enc, b_enc, torch.tensor(0.0))
    if candidates.values.numel() <= target:
        return candidates
    cutoff = candidates.values.kthvalue(candidates.values.numel() - target + 1).values
    return candidates.select(candidates.values >= cutoff)
