"""The search engine: shared-weight training, controller training, derivation, checkpoint/resume.

The search space (NAR's iresnet slots or ENAS's macro space) comes from facenar.search.spaces.

One epoch = one pass of shared-weight SGD (one architecture per minibatch, proposed by the search
strategy: facenar.search.strategies), then the strategy learns from rewards = the task's metric on
its val split (facenar.tasks supplies data, head, loss and metric). Derivation scores the strategy's
candidates on the whole val split, keeps the best within the budget and writes the Pareto front.
Everything that decides the outcome (weights, optimizers, the strategy's state, every RNG) is saved
at each epoch's end, and data order is a function of (seed, epoch), so a killed run resumed from
its last checkpoint ends exactly where an uninterrupted one would (single process, CPU).
"""
from __future__ import annotations

import contextlib
import dataclasses
import time
from itertools import islice
from pathlib import Path

import torch

from data_tools.cli import UserError, progress
from facenar.dist import (DistContext, all_reduce_mean, amp_dtype, barrier, broadcast_object, init_distributed,
                          shutdown)
from facenar.checkpoint import (capture_rng, load_checkpoint, restore_rng, restoring, save_checkpoint, seed_everything,
                                to_cpu)
from facenar.config import format_differences
from facenar.rundir import RunDir, owning
from facenar.schedule import set_lr, sgdr_lr
from facenar.search.config import SearchConfig, search_space
from facenar.search.budget import Budget
from facenar.search.spaces import make_space
from facenar.search.derivation import derive
from facenar.search.costs import latency_model
from facenar.search.reward import RewardModel
from facenar.search.record import CURVES_PNG, HEATMAP_PNG, SearchRecord
from facenar.search.strategies import STRATEGIES
from facenar.search.strategies.base import Scoring
from facenar.tasks import get_task

CHECKPOINT = "checkpoint.pt"
ARCH_JSON = "arch.json"
PARETO_JSON, PARETO_PNG = "pareto.json", "pareto.png"  # written beside arch.json (facenar.search.derivation)
CHECKPOINT_FORMAT = "facenar-search-v1"
PLOT_EVERY = 5  # epochs; plots are also drawn at the end and when stopping


class NarSearch:
    """A search bound to a run directory; `run()` trains (or resumes) and derives the architecture."""

    def __init__(self, cfg: SearchConfig, run: RunDir, ctx: DistContext, workers: int = 0,
                 data=None):
        self.cfg, self.run_dir, self.ctx, self.workers = cfg, run, ctx, workers
        self.device = ctx.device
        seed_everything(cfg.seed)
        task = get_task(cfg.task)
        self.data = data if data is not None else task.search_data(cfg)
        self.space = make_space(cfg)  # NAR's or ENAS's: supernet, controller, codes, arch file
        self.supernet = self.space.supernet().to(self.device)
        self.head = task.search_head(dataclasses.replace(cfg, embedding_size=self.space.feature_size),
                                     self.data.num_classes).to(self.device)
        self.loss = task.search_loss(cfg)
        self.params = [p for m in (self.supernet, self.head) for p in m.parameters()]
        self.optimizer = torch.optim.SGD(self.params, lr=cfg.lr, momentum=cfg.momentum, nesterov=True,
                                         weight_decay=cfg.weight_decay)
        self.arch_gen = torch.Generator().manual_seed(cfg.seed + 1)
        self.val_gen = torch.Generator().manual_seed(cfg.seed + 2)
        self.amp_dtype = amp_dtype(cfg.amp, self.device)
        self.scaler = torch.amp.GradScaler("cuda") if self.amp_dtype == torch.float16 else None
        self.budget = Budget(self.space, cfg)
        self.strategy = STRATEGIES.get(cfg.strategy)(self.space, cfg, self.budget, self.arch_gen)
        self.rewards = RewardModel(self.supernet, self.head, self.data, task.reward_correct, self.autocast,
                                   self.space.template, cfg) if ctx.is_main else None
        self.scoring = Scoring(self.rewards.batch, lambda: self.data.val_batch(cfg.val_batch, self.val_gen,
                                                                               self.device)) if ctx.is_main else None
        self.record = SearchRecord(run.path, self.space.candidates,
                                   self.space.extra_columns + self.strategy.extra_columns, self.space.slot_name,
                                   curve=self.strategy.curve) if ctx.is_main else None
        self.epoch, self.best = 0, {"reward": None, "codes": None}

    # ----- one epoch -------------------------------------------------------------------------
    def autocast(self):
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp_dtype)

    def _epoch_archs(self, steps: int) -> list[list[int]]:
        """The architecture of every minibatch of this epoch, sampled on rank 0 and shared."""
        codes = self.strategy.train_archs(self.epoch, steps) if self.ctx.is_main else None
        return broadcast_object(codes, self.ctx)

    def _train_shared(self) -> dict:
        cfg = self.cfg
        loader = self.data.train_loader(cfg.batch_size, cfg.seed, self.epoch, self.ctx, self.workers,
                                        pin=self.device.type == "cuda")
        steps = len(loader) if not cfg.steps_per_epoch else min(len(loader), cfg.steps_per_epoch)
        archs = self._epoch_archs(steps)
        self.supernet.train()
        self.head.train()
        totals = torch.zeros(3, dtype=torch.float64, device=self.device)  # loss sum, correct, seen
        bar = progress(islice(loader, steps), total=steps, desc=f"epoch {self.epoch + 1}/{cfg.epochs}")
        for i, (images, labels) in enumerate(bar):
            set_lr(self.optimizer, sgdr_lr(self.epoch + i / steps, cfg.t0, cfg.t_mult, cfg.lr, cfg.lr_min))
            images = images.to(self.device, non_blocking=True)
            labels = labels.to(self.device, non_blocking=True)
            with self.autocast():
                logits = self.head(self.supernet(images, archs[i])).float()
            loss = self.loss(logits, labels)
            self.optimizer.zero_grad(set_to_none=True)
            if self.scaler is not None:
                self.scaler.scale(loss).backward()
                self._sync_grads()
                self.scaler.step(self.optimizer)
                self.scaler.update()
            else:
                loss.backward()
                self._sync_grads()
                self.optimizer.step()
            totals += torch.stack([loss.detach().double() * len(labels), (logits.argmax(1) == labels).sum().double(),
                                   totals.new_tensor(len(labels))])
        all_reduce_mean(totals, self.ctx)
        self._sync_buffers()
        freq = self.space.op_freq(archs)  # per slot (NAR) or layer (ENAS): fraction of minibatches per op
        return {"shared_loss": totals[0].item() / totals[2].item(), "train_acc": totals[1].item() / totals[2].item(),
                "op_freq": freq, "diversity": sum(any(row[op] > 0 for row in freq) for op in range(len(freq[0])))}

    def _sync_grads(self) -> None:
        """Average the active path's gradients over ranks (inactive branches have none, on every rank)."""
        if not self.ctx.distributed:
            return
        grads = [p.grad for p in self.params if p.grad is not None]
        flat = all_reduce_mean(torch.cat([g.reshape(-1) for g in grads]), self.ctx)
        offset = 0
        for g in grads:
            g.copy_(flat[offset:offset + g.numel()].view_as(g))
            offset += g.numel()

    def _sync_buffers(self) -> None:
        if self.ctx.distributed:
            for buf in self.supernet.buffers():
                if buf.dtype.is_floating_point:
                    all_reduce_mean(buf, self.ctx)

    def _learn(self) -> dict:
        """The strategy learns from val-minibatch rewards (or, in PreTrain, scores uniform samples)."""
        return self.strategy.learn(self.epoch, self.scoring)

    # ----- checkpoint ------------------------------------------------------------------------
    def save(self) -> None:
        payload = {"format": CHECKPOINT_FORMAT, "epoch": self.epoch, "best": self.best,
                   "supernet": self.supernet.state_dict(), "head": self.head.state_dict(),
                   "optimizer": self.optimizer.state_dict(), "strategy": self.strategy.state_dict(),
                   "arch_gen": self.arch_gen.get_state(), "val_gen": self.val_gen.get_state(),
                   "rng": capture_rng()}
        if self.scaler is not None:
            payload["scaler"] = self.scaler.state_dict()
        save_checkpoint(self.run_dir.path / CHECKPOINT, payload)

    def load(self) -> None:
        path = self.run_dir.path / CHECKPOINT
        if not path.is_file():
            raise UserError(f"--resume {self.run_dir.path}: no {CHECKPOINT} there (the run stopped before its "
                            "first epoch ended); start it again with --out (the folder is reused)")
        state = load_checkpoint(path, map_location=self.device)
        if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
            raise UserError(f"{path} is not a facenar search checkpoint")
        with restoring(path):
            self.supernet.load_state_dict(state["supernet"])
            self.head.load_state_dict(state["head"])
            self.optimizer.load_state_dict(state["optimizer"])
            # a checkpoint from before the strategies kept the controller's state at the top level
            self.strategy.load_state_dict(to_cpu(state.get("strategy", {"reinforce": state.get("reinforce")})))
            self.arch_gen.set_state(state["arch_gen"].cpu())
            self.val_gen.set_state(state["val_gen"].cpu())
            if self.scaler is not None and "scaler" in state:
                self.scaler.load_state_dict(state["scaler"])
            restore_rng(state["rng"])
            self.epoch, self.best = state["epoch"], state["best"]

    # ----- the whole run ---------------------------------------------------------------------
    def run(self, resume: bool = False, stop_after_epochs: int | None = None):
        """Train until cfg.epochs (or `stop_after_epochs` more, to simulate a kill), then derive."""
        cfg = self.cfg
        if resume:
            self.load()
            if self.ctx.is_main:
                self.record.truncate_after(self.epoch)
                self.run_dir.log(f"resumed {self.run_dir.path} after epoch {self.epoch}")
        elif self.ctx.is_main:
            self.run_dir.log(format_differences(cfg))  # first: a demo run is never mistaken for the paper's
            self.run_dir.log(f"{self.space.describe()}, strategy {cfg.strategy}, {cfg.epochs} epochs "
                             f"({cfg.pretrain_epochs} PreTrain); "
                             f"{self.data.describe()}; "
                             f"{self.ctx.world_size} process(es) on {self.device}; run dir {self.run_dir.path}")
        done_here = 0
        while self.epoch < cfg.epochs:
            if stop_after_epochs is not None and done_here >= stop_after_epochs:
                return None
            started = time.perf_counter()
            lr = sgdr_lr(self.epoch, cfg.t0, cfg.t_mult, cfg.lr, cfg.lr_min)
            shared = self._train_shared()
            if self.ctx.is_main:
                ctrl = self._learn()
                if ctrl["reward_max"] is not None and (self.best["reward"] is None
                                                       or ctrl["reward_max"] > self.best["reward"]):
                    self.best = {"reward": ctrl["reward_max"], "codes": ctrl["best_codes"]}
            barrier(self.ctx)
            self.epoch += 1
            done_here += 1
            if self.ctx.is_main:
                row = {"epoch": self.epoch, "lr": lr, "shared_loss": shared["shared_loss"],
                       "train_acc": shared["train_acc"], "diversity": shared["diversity"],
                       "best_reward": self.best["reward"], **ctrl,
                       "best_codes": "-".join(map(str, self.best["codes"] or []))}
                self.record.add_epoch(row, shared["op_freq"])
                if self.epoch % PLOT_EVERY == 0 or self.epoch == cfg.epochs or done_here == stop_after_epochs:
                    self.record.plot()
                self.save()
                self.run_dir.log(f"epoch {self.epoch}/{cfg.epochs} [{ctrl['phase']}] lr {lr:.4g} "
                                 f"loss {shared['shared_loss']:.4f} train_acc {shared['train_acc']:.4f} "
                                 f"reward {_num(ctrl['reward_mean'])}/{_num(ctrl['reward_max'])} "
                                 f"entropy {ctrl['entropy']:.3f} ({time.perf_counter() - started:.1f} s)")
            barrier(self.ctx)
        return self.derive() if self.ctx.is_main else None

    def score_candidates(self, codes_list: list[list[int]]) -> list[float]:
        """Accuracy of each architecture on the whole val split with the current shared weights (each
        distinct one scored once): the one place derivation scores a list of candidates."""
        scored: dict[tuple, float] = {}
        for codes in progress(codes_list, total=len(codes_list), desc="derive"):
            if tuple(codes) not in scored:
                scored[tuple(codes)] = self.rewards.accuracy_full(codes)
        return [scored[tuple(codes)] for codes in codes_list]

    def derive(self):
        """Score the strategy's candidates on the whole val split; arch.json = the best within the budget."""
        cfg = self.cfg
        search = {"run_dir": str(self.run_dir.path), "data": cfg.data, "seed": cfg.seed, "epochs": cfg.epochs,
                  "pretrain_epochs": cfg.pretrain_epochs, "derive_samples": cfg.derive_samples, "cost": cfg.cost,
                  "target_macs": cfg.target_macs, "target_latency": cfg.target_latency}
        derived = derive(self, self.run_dir.path / ARCH_JSON, provenance={"search": search})
        print(derived.table, flush=True)
        self.run_dir.log("derived architecture:\n" + derived.table, echo=False)
        self.run_dir.log(f"derived: {derived.closeness}")
        self.run_dir.log(f"wrote {self.run_dir.path / ARCH_JSON}, {PARETO_JSON}, {PARETO_PNG}; record: search.csv, "
                         f"search_ops.csv, {CURVES_PNG}, {HEATMAP_PNG}")
        self.record.close()
        return derived.arch


def _num(value) -> str:
    return "-" if value is None else f"{value:.4f}"  # evolution: no child within the budget this epoch


def run_search(make_config, out: str | Path, resume: bool = False, force: bool = False, device: str = "auto",
               stop_after_epochs: int | None = None):
    """Join torchrun's group (if any), resolve the config and run directory on rank 0, search."""
    ctx = init_distributed(device)
    try:
        config, data = None, None
        if ctx.is_main:
            cfg = make_config()
            data = get_task(cfg.task).search_data(cfg)  # bad input fails before any write
            data.train_loader(cfg.batch_size, cfg.seed, 0, ctx, 0, False)  # (its batch-size check: no workers start)
            if cfg.cost == "latency":
                latency_model(cfg.latency_table, search_space(cfg))
            Budget(make_space(cfg), cfg).check_feasible()  # an impossible budget fails before any write
            if resume:
                RunDir.open_resume(out, cfg.to_dict(), ignore=SearchConfig.RESUMABLE, upgrade=SearchConfig.upgrade)
            else:
                RunDir.check(out, force, inputs={"--data": cfg.data, "--latency-table": cfg.latency_table})
                RunDir.create(out, cfg.to_dict(), force=force)  # --force: the previous run there is replaced
            config = cfg.to_dict()
        config, out = broadcast_object((config, str(out)), ctx)
        cfg = SearchConfig(**config)
        workers = (4 if ctx.device.type == "cuda" else 0) if cfg.workers is None else cfg.workers
        engine = NarSearch(cfg, RunDir(out), ctx, workers, data)
        with owning(out) if ctx.is_main else contextlib.nullcontext():
            return engine.run(resume=resume, stop_after_epochs=stop_after_epochs)
    finally:
        shutdown(ctx)
