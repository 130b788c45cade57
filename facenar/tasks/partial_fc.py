"""Partial FC: the margin-softmax classifier with its class centres sharded over the ranks.

With 85,742 identities (and far more in larger sets) the centre matrix and its logits dominate
memory, so each rank keeps a contiguous slice of the centres, sees the embeddings of the whole
global batch (all-gathered), computes logits for its own classes only, and the softmax
cross-entropy is assembled with two all-reduces (row max, row sum of exponentials) instead of
materialising the full logit matrix anywhere. With one process this is exactly the full FC.
Optional negative-class sampling (insightface's PartialFC v2) keeps every centre that is a
positive in the batch plus a random subset of the others.
"""
from __future__ import annotations

import torch
import torch.distributed as torch_dist
import torch.nn.functional as F
from torch import nn

from facenar.dist import DistContext

INIT_STD = 0.01
_INIT_CHUNK = 65536  # centres are initialised chunk by chunk, so init is independent of the sharding


def shard_range(num_classes: int, rank: int, world_size: int) -> tuple[int, int]:
    """(first class, number of classes) of rank's contiguous slice; sizes differ by at most one."""
    base, extra = divmod(num_classes, world_size)
    count = base + int(rank < extra)
    start = base * rank + min(rank, extra)
    return start, count


def init_centres(num_classes: int, embedding_size: int, start: int, count: int, seed: int) -> torch.Tensor:
    """Rows start..start+count of a N(0, 0.01) centre matrix that depends only on (seed, class).

    Each rank generates only the chunks overlapping its slice, so a run on W processes starts from
    the same centres as a run on one process (that is what makes the equivalence test meaningful).
    """
    out = torch.empty(count, embedding_size)
    end = start + count
    for chunk in range(start // _INIT_CHUNK, (end - 1) // _INIT_CHUNK + 1 if count else 0):
        lo, hi = chunk * _INIT_CHUNK, min((chunk + 1) * _INIT_CHUNK, num_classes)
        gen = torch.Generator().manual_seed(seed * 1_000_003 + chunk)
        block = torch.randn(hi - lo, embedding_size, generator=gen) * INIT_STD
        a, b = max(lo, start), min(hi, end)
        out[a - start:b - start] = block[a - lo:b - lo]
    return out


class _AllGather(torch.autograd.Function):
    """All-gather along dim 0 whose backward returns this rank's part of the summed gradient.

    The gradient is multiplied by the world size because DDP later averages the backbone's
    gradients over ranks, while the loss here is already the mean over the global batch.
    """

    @staticmethod
    def forward(ctx, local: torch.Tensor, world_size: int, rank: int):
        parts = [torch.empty_like(local) for _ in range(world_size)]
        torch_dist.all_gather(parts, local.contiguous())
        ctx.rank, ctx.world_size, ctx.rows = rank, world_size, local.shape[0]
        return torch.cat(parts)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        grad = grad.contiguous()
        torch_dist.all_reduce(grad, op=torch_dist.ReduceOp.SUM)
        mine = grad[ctx.rank * ctx.rows:(ctx.rank + 1) * ctx.rows] * ctx.world_size
        return mine, None, None


class _ShardedCrossEntropy(torch.autograd.Function):
    """Mean softmax cross-entropy over classes split column-wise across ranks.

    `labels` are shard-local columns, -1 where the target class lives on another rank.
    loss_i = log(sum_j exp(z_ij - m_i)) + m_i - z_i,target, with max, sum and target all-reduced.
    """

    @staticmethod
    def forward(ctx, logits: torch.Tensor, labels: torch.Tensor, distributed: bool):
        owned = labels >= 0  # (fixed shapes below, no boolean-mask indexing: no wait for the GPU)
        row_max = logits.max(dim=1).values
        if distributed:
            torch_dist.all_reduce(row_max, op=torch_dist.ReduceOp.MAX)
        exp = torch.exp(logits - row_max[:, None])
        sums = torch.zeros(2, logits.shape[0], dtype=logits.dtype, device=logits.device)
        sums[0] = exp.sum(dim=1)
        target = logits.gather(1, labels.clamp_min(0)[:, None]).squeeze(1)
        sums[1] = torch.where(owned, target, torch.zeros_like(target))  # the target logit, from its owner
        if distributed:
            torch_dist.all_reduce(sums, op=torch_dist.ReduceOp.SUM)
        sum_exp, target = sums
        loss = (torch.log(sum_exp) + row_max - target).mean()
        exp.div_(sum_exp[:, None])  # softmax probabilities, kept for the backward
        ctx.save_for_backward(exp, labels)
        return loss

    @staticmethod
    def backward(ctx, grad_loss: torch.Tensor):
        prob, labels = ctx.saved_tensors
        grad = prob.clone()
        grad.scatter_add_(1, labels.clamp_min(0)[:, None], -(labels >= 0).to(grad.dtype)[:, None])
        grad.mul_(grad_loss / grad.shape[0])
        return grad, None, None


class PartialFC(nn.Module):
    """Sharded cosine classifier + margin softmax loss; forward(local embeddings, labels) -> loss.

    Not part of DDP: each rank owns different parameters, and the gradients that reach them are
    already those of the global-batch loss.
    """

    def __init__(self, embedding_size: int, num_classes: int, margin: nn.Module,
                 ctx: DistContext | None = None, sample_rate: float = 1.0, seed: int = 0):
        super().__init__()
        if not 0.0 < sample_rate <= 1.0:
            raise ValueError(f"sample_rate must be in (0, 1], got {sample_rate}")
        self.rank = ctx.rank if ctx else 0
        self.world_size = ctx.world_size if ctx else 1
        self.num_classes, self.embedding_size = num_classes, embedding_size
        if num_classes < self.world_size:
            raise ValueError(f"{num_classes} classes cannot be sharded over {self.world_size} processes")
        self.class_start, self.num_local = shard_range(num_classes, self.rank, self.world_size)
        self.sample_rate = sample_rate
        self.margin = margin
        self.weight = nn.Parameter(init_centres(num_classes, embedding_size, self.class_start, self.num_local, seed))

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        if self.distributed:
            embeddings = _AllGather.apply(embeddings, self.world_size, self.rank)
            labels = _gather_plain(labels, self.world_size)
        local = labels - self.class_start
        local = torch.where((local >= 0) & (local < self.num_local), local, torch.full_like(local, -1))
        weight = self.weight
        if self.sample_rate < 1.0:
            weight, local = self._sample(local)
        cosine = F.linear(F.normalize(embeddings.float()), F.normalize(weight.float()))
        logits = self.margin(cosine, local)
        return _ShardedCrossEntropy.apply(logits, local, self.distributed)

    def _sample(self, local: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Keep every positive centre of the batch plus random negatives, about sample_rate of the shard.

        The kept count is fixed by the batch size, not by how many positives this batch has (at most
        one per row), so no step waits for the GPU to count them.
        """
        keep = min(self.num_local, max(int(self.sample_rate * self.num_local), local.numel(), 1))
        hits = torch.zeros(self.num_local, device=self.weight.device)
        hits.scatter_add_(0, local.clamp_min(0), (local >= 0).to(hits.dtype))
        score = torch.rand(self.num_local, device=self.weight.device)
        score = torch.where(hits > 0, 2.0, score)  # above any random score: positives always survive top-k
        index = torch.sort(torch.topk(score, k=keep).indices).values
        remapped = torch.searchsorted(index, local.clamp_min(0))
        remapped = torch.where(local >= 0, remapped, local)
        return self.weight[index], remapped

    def full_weight(self) -> torch.Tensor | None:
        """Collective: the whole centre matrix on rank 0 (None elsewhere); see gather_rows."""
        return gather_rows(self.weight.detach(), self.num_classes, self.rank, self.world_size)

    def load_full_weight(self, full: torch.Tensor) -> None:
        """Take this rank's slice of a full centre matrix (re-sharding a checkpoint from any world size)."""
        if tuple(full.shape) != (self.num_classes, self.embedding_size):
            raise ValueError(f"centre matrix has shape {tuple(full.shape)}, expected "
                             f"({self.num_classes}, {self.embedding_size})")
        with torch.no_grad():
            self.weight.copy_(self.shard(full))

    def shard(self, full: torch.Tensor) -> torch.Tensor:
        return full[self.class_start:self.class_start + self.num_local]

    def checkpoint_state(self, optimizer: torch.optim.Optimizer) -> dict:
        """Collective: the full centre matrix and its SGD momentum on rank 0 (empty dict elsewhere)."""
        weight = self.full_weight()
        buf = optimizer.state.get(self.weight, {}).get("momentum_buffer")
        momentum = None if buf is None else gather_rows(buf, self.num_classes, self.rank, self.world_size)
        return {"head": weight, "head_momentum": momentum} if self.rank == 0 else {}

    def load_checkpoint_state(self, payload: dict, optimizer: torch.optim.Optimizer) -> None:
        """This rank's slice of a checkpoint's centres and momentum, written on any number of processes."""
        self.load_full_weight(payload["head"])
        if payload.get("head_momentum") is not None:
            shard = self.shard(payload["head_momentum"]).to(self.weight.device).clone()
            optimizer.state[self.weight]["momentum_buffer"] = shard


def _gather_plain(tensor: torch.Tensor, world_size: int) -> torch.Tensor:
    parts = [torch.empty_like(tensor) for _ in range(world_size)]
    torch_dist.all_gather(parts, tensor.contiguous())
    return torch.cat(parts)


def gather_rows(shard: torch.Tensor, num_rows: int, rank: int, world_size: int) -> torch.Tensor | None:
    """Collective: concatenate every rank's contiguous row slice into the full tensor on rank 0.

    Slices can differ in length by one, so they travel padded to the largest and are trimmed.
    """
    if world_size == 1:
        return shard.cpu().clone()
    biggest = shard_range(num_rows, 0, world_size)[1]
    padded = shard.new_zeros((biggest, *shard.shape[1:]))
    padded[:shard.shape[0]] = shard
    parts = [torch.empty_like(padded) for _ in range(world_size)] if rank == 0 else None
    torch_dist.gather(padded, parts, dst=0)
    if rank != 0:
        return None
    return torch.cat([parts[r][:shard_range(num_rows, r, world_size)[1]] for r in range(world_size)]).cpu()
