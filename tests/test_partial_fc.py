"""Partial FC: equal to the full FC on one process, and on two gloo processes after a training step."""
from __future__ import annotations

import os

import pytest
import torch
import torch.distributed as torch_dist
import torch.multiprocessing as mp
import torch.nn.functional as F
from torch import nn

from facenar.tasks.heads import CosineClassifier, MarginSoftmax
from facenar.tasks.partial_fc import PartialFC, _ShardedCrossEntropy, init_centres, shard_range
from facenar.train.config import MARGINS

DIM, CLASSES, SEED = 8, 11, 3


def _reference_loss(embeddings, weight, labels, margin):
    """The plain full FC: every centre in one matrix, F.cross_entropy over all classes."""
    head = CosineClassifier(DIM, CLASSES)
    with torch.no_grad():
        head.weight.copy_(weight)
    return F.cross_entropy(margin(head(embeddings), labels), labels), head.weight


@pytest.mark.parametrize("classes,world", [(11, 2), (10, 3), (100_000, 7), (5, 5)])
def test_shards_tile_the_classes(classes, world):
    spans = [shard_range(classes, r, world) for r in range(world)]
    assert spans[0][0] == 0 and sum(n for _, n in spans) == classes
    assert all(a + n == b for (a, n), (b, _) in zip(spans, spans[1:]))
    assert max(n for _, n in spans) - min(n for _, n in spans) <= 1


def test_initial_centres_do_not_depend_on_the_sharding():
    whole = init_centres(70_000, 4, 0, 70_000, seed=1)
    parts = [init_centres(70_000, 4, *shard_range(70_000, r, 3), seed=1) for r in range(3)]
    assert torch.equal(torch.cat(parts), whole)
    assert not torch.equal(init_centres(70_000, 4, 0, 10, seed=2), whole[:10])
    assert abs(whole.std().item() - 0.01) < 1e-3


@pytest.mark.parametrize("kind", ["arcface", "cosface", "combined"])
def test_one_process_is_the_full_fc(kind):
    torch.manual_seed(0)
    margin = MarginSoftmax(kind, 64.0, *MARGINS[kind])
    embeddings = torch.randn(6, DIM, requires_grad=True)
    labels = torch.tensor([0, 3, 10, 9, 3, 1])
    pfc = PartialFC(DIM, CLASSES, margin, seed=SEED)
    loss = pfc(embeddings, labels)
    loss.backward()

    ref_embeddings = embeddings.detach().clone().requires_grad_(True)
    ref_loss, ref_weight = _reference_loss(ref_embeddings, init_centres(CLASSES, DIM, 0, CLASSES, SEED), labels, margin)
    ref_loss.backward()
    assert loss.item() == pytest.approx(ref_loss.item(), rel=1e-6, abs=1e-5)  # float32 at s=64: a few ulp
    assert torch.allclose(embeddings.grad, ref_embeddings.grad, atol=1e-6)
    assert torch.allclose(pfc.weight.grad, ref_weight.grad, atol=1e-6)


def test_sharded_cross_entropy_gradient():
    logits = torch.randn(5, 7, dtype=torch.double, requires_grad=True)
    labels = torch.tensor([0, 6, 2, 2, 5])
    assert torch.autograd.gradcheck(lambda z: _ShardedCrossEntropy.apply(z, labels, False), (logits,))
    loss = _ShardedCrossEntropy.apply(logits, labels, False)
    assert loss.item() == pytest.approx(F.cross_entropy(logits, labels).item(), abs=1e-12)


def test_negative_sampling_keeps_positives_and_trains_only_sampled_centres():
    torch.manual_seed(0)
    pfc = PartialFC(DIM, 40, MarginSoftmax("arcface"), sample_rate=0.25, seed=SEED)
    labels = torch.tensor([1, 7, 7, 33, 20])
    local = labels.clone()
    weight, remapped = pfc._sample(local)
    assert weight.shape[0] == 10
    kept = torch.nonzero((pfc.weight[:, None, :] == weight[None]).all(-1))[:, 0]
    assert set(labels.tolist()) <= set(kept.tolist())
    assert torch.equal(kept[remapped], labels)

    loss = pfc(torch.randn(5, DIM), labels)
    loss.backward()
    touched = pfc.weight.grad.abs().sum(1) > 0
    assert touched.sum().item() == 10 and touched[labels].all()


# ---- two processes ---------------------------------------------------------------------------

def _backbone():
    """No BatchNorm: per-rank batch statistics would differ from the global batch's by design."""
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(3 * 4 * 4, 16), nn.PReLU(16), nn.Linear(16, DIM))


def _batch():
    gen = torch.Generator().manual_seed(1)
    return torch.randn(8, 3, 4, 4, generator=gen) * 3, torch.tensor([0, 5, 6, 10, 2, 6, 9, 0])


def _step_worker(rank: int, world: int, folder: str) -> None:
    from facenar.dist import init_distributed
    from facenar.train.config import TrainConfig
    from facenar.train.engine import TrainStep

    os.environ.update(WORLD_SIZE=str(world), RANK=str(rank), LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    torch_dist.init_process_group("gloo", init_method=f"file://{folder}/rendezvous", rank=rank, world_size=world)
    ctx = init_distributed("cpu")
    backbone = _backbone()
    head = PartialFC(DIM, CLASSES, MarginSoftmax("arcface"), ctx, sample_rate=1.0, seed=SEED)
    engine = TrainStep(backbone, head, TrainConfig(), ctx)
    images, labels = _batch()
    share = len(labels) // world
    mine = slice(rank * share, (rank + 1) * share)
    loss = engine.step(images[mine], labels[mine], lr=0.1)
    state = engine.state()
    if rank == 0:
        torch.save({"loss": loss, "backbone": backbone.state_dict(), "head": state["head"],
                    "momentum": state["head_momentum"]}, f"{folder}/result.pt")
    torch_dist.barrier()  # no rank tears down gloo while the other still uses it (aborts otherwise)
    torch_dist.destroy_process_group()


@pytest.mark.slow
def test_two_processes_take_the_same_step_as_one_full_fc(tmp_path):
    mp.spawn(_step_worker, args=(2, str(tmp_path)), nprocs=2, join=True)
    got = torch.load(tmp_path / "result.pt", weights_only=True)

    backbone = _backbone()
    margin = MarginSoftmax("arcface")
    images, labels = _batch()
    loss, weight = _reference_loss(backbone(images), init_centres(CLASSES, DIM, 0, CLASSES, SEED), labels, margin)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(backbone.parameters(), 5.0)
    torch.optim.SGD([*backbone.parameters(), weight], lr=0.1, momentum=0.9, weight_decay=5e-4).step()

    assert got["loss"] == pytest.approx(loss.item(), rel=1e-6, abs=1e-5)
    for name, value in backbone.state_dict().items():
        assert torch.allclose(got["backbone"][name], value, rtol=1e-5, atol=1e-5), name
    assert got["head"].shape == (CLASSES, DIM)
    assert torch.allclose(got["head"], weight.detach(), rtol=1e-5, atol=1e-5)
    assert torch.allclose(got["momentum"], weight.grad + 5e-4 * init_centres(CLASSES, DIM, 0, CLASSES, SEED), rtol=1e-4,
                          atol=1e-5)  # float32 sums of s=64 terms that cancel: measured 4e-5 relative on AVX-512
