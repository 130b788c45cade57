"""How the search scores an architecture: closed-set accuracy on the in-memory proxy-val set
with the current shared weights, optionally shaped by a cost model (multiply-adds or latency).
"""
from __future__ import annotations

import hashlib
import math

import torch

from facenar.search.costs import latency_model, macs_model

EVAL_CHUNK = 256


class RewardModel:
    """Reward of an architecture with the current shared weights: accuracy, times a cost factor.

    Given what scoring needs: the supernet and head, the task's search data (val set + input
    conversion), its correct-count metric, and the engine's autocast.
    """

    def __init__(self, supernet, head, data, correct, autocast, space, cfg):
        self.net, self.head, self.data, self.correct, self.autocast = supernet, head, data, correct, autocast
        self.weight, self.bn = cfg.cost_weight, cfg.reward_bn
        self.settings = {"data": cfg.data, "reward_bn": cfg.reward_bn, "amp": cfg.amp}
        self.known: dict[tuple, float] = {}  # whole-val accuracies measured earlier with these very weights
        self.target, self.cost = None, None
        if cfg.cost == "latency" and cfg.target_latency:
            self.target, self.cost = cfg.target_latency, latency_model(cfg.latency_table, space)
        elif cfg.cost == "macs" and cfg.target_macs:
            self.target, self.cost = cfg.target_macs, macs_model(space)

    def shape(self, accuracy: float, codes) -> float:
        """MnasNet's soft constraint: acc * (cost / target) ** w, applied only above the target."""
        if self.target is None:
            return accuracy
        cost = self.cost(tuple(codes))
        return accuracy * (cost / self.target) ** self.weight if cost > self.target else accuracy

    @torch.no_grad()
    def accuracy(self, codes, images: torch.Tensor, labels: torch.Tensor) -> float:
        """The task's metric (face: closed-set identification, argmax over the proxy identities).

        BN uses each chunk's own statistics ("batch", as ENAS scores its children; the running
        averages are restored afterwards) or the running averages ("eval"), which in a supernet mix
        every op's output statistics and, measured on the demo, rank architectures mostly by noise.
        """
        net, head = self.net, self.head
        saved = [buf.clone() for buf in net.buffers()] if self.bn == "batch" else []
        net.train(self.bn == "batch")
        correct = 0
        try:
            for chunk in torch.arange(len(labels), device=labels.device).tensor_split(
                    math.ceil(len(labels) / EVAL_CHUNK)):  # near-equal chunks: no tiny last batch
                with self.autocast():
                    features = net(self.data.to_input(images[chunk]), list(codes))
                logits = head(features.float())  # fp32: the cosine head needs it (see the engine)
                correct += self.correct(logits, labels[chunk])
        finally:
            for buf, value in zip(net.buffers(), saved):
                buf.copy_(value)
            net.train()
        return correct / len(labels)

    def batch(self, batch_codes, images, labels) -> list[float]:
        return [self.shape(self.accuracy(codes, images, labels), codes) for codes in batch_codes]

    def stamp(self) -> dict:
        """What decides a whole-val accuracy: a digest of the shared weights and head (every tensor's bytes)
        and the scoring settings. Written into pareto.json, so `derive` reuses those scores (reuse) only
        when it scores with exactly these weights, on the same data, device type and precision."""
        digest = hashlib.sha256()
        for module in (self.net, self.head):
            for name, tensor in module.state_dict().items():
                digest.update(name.encode())
                digest.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
        device = next(self.head.parameters()).device.type
        return {"weights_sha256": digest.hexdigest(), "device": device, **self.settings}

    def reuse(self, scored: dict) -> int:
        """Take the accuracies of a pareto.json (its "points") when its "scored_with" is this model's
        stamp; how many were taken (0: other weights or settings, or an older file without a stamp)."""
        if scored.get("scored_with") != self.stamp():
            return 0
        self.known = {tuple(point["codes"]): point["accuracy"] for point in scored.get("points", [])}
        return len(self.known)

    def accuracy_full(self, codes) -> float:
        return self.accuracy(codes, *self.data.val_set(next(self.head.parameters()).device))

    def full(self, codes) -> float:
        return self.shape(self.accuracy_full(codes), codes)
