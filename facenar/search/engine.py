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

from facenar_runtime.cli import progress
from facenar_runtime.errors import UserError
from facenar.search.controller import all_finite
from facenar.speed import op_compiler, warn
from facenar.dist import (DistContext, all_reduce_mean, amp_dtype, barrier, broadcast_object, distributed_job,
                          shard_and_gather)
from facenar.checkpoint import (LAST, OLD_SEARCH_LAST, SEARCH_FORMAT, capture_rng, load_checkpoint, restore_rng,
                                restoring, resume_file, save_checkpoint, seed_everything, to_cpu)
from facenar.config import format_differences
from facenar.rundir import RunDir, default_run_folder, release_ownership
from facenar.schedule import set_lr, sgdr_lr, describe_lr, lr_scale_factor
from facenar.data import device_input, loader_workers
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

ARCH_JSON = "arch.json"
PARETO_JSON, PARETO_PNG = "pareto.json", "pareto.png"  # written beside arch.json (facenar.search.derivation)
PLOT_EVERY = 5  # epochs; plots are also drawn at the end and when stopping


class SearchEngine:
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
        self._logits_and_loss = self._compile(cfg.compile)
        self.params = [p for m in (self.supernet, self.head) for p in m.parameters()]
        self.optimizer = torch.optim.SGD(self.params, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.momentum > 0,
                                         weight_decay=cfg.weight_decay)
        self.arch_gen = torch.Generator().manual_seed(cfg.seed + 1)
        self.val_gen = torch.Generator().manual_seed(cfg.seed + 2)
        self.amp_dtype = amp_dtype(cfg.amp, self.device)
        self.scaler = torch.amp.GradScaler("cuda") if self.amp_dtype == torch.float16 else None
        self.budget = Budget(self.space, cfg)
        self.strategy = STRATEGIES.get(cfg.strategy)(self.space, cfg, self.budget, self.arch_gen)
        # every rank scores: derivation's candidates are shared out (rank 0 alone runs the strategy's steps)
        self.rewards = RewardModel(self.supernet, self.head, self.data, task.reward_correct, self.autocast,
                                   self.space.template, cfg)
        self.scoring = Scoring(self.rewards.batch, lambda: self.data.val_batch(cfg.val_batch, self.val_gen,
                                                                               self.device)) if ctx.is_main else None
        self.lr_factor = lr_scale_factor(cfg.lr_scale, cfg.batch_size * ctx.world_size, cfg.batch_size)
        self.record = SearchRecord(run.path, self.space.candidates,
                                   self.space.extra_columns + self.strategy.extra_columns, self.space.slot_name,
                                   curve=self.strategy.curve) if ctx.is_main else None
        self.epoch, self.best = 0, {"reward": None, "codes": None}

    def _compile(self, mode: str):
        """--compile: the supernet's parts compiled per choice (Supernet.compile_parts through
        facenar.speed.op_compiler) and the head with the loss as one graph; the module tree is unchanged.
        Returns the (maybe compiled) function from features to (logits, loss)."""
        head, loss_fn = self.head, self.loss

        def logits_and_loss(features: torch.Tensor, labels: torch.Tensor):
            logits = head(features.float())  # the cosine head in fp32: bf16 costs +-0.1 on an s=64 logit
            return logits, loss_fn(logits, labels)

        if mode == "off":
            return logits_and_loss
        if not hasattr(self.supernet, "compile_parts"):
            warn(f"--compile: the {self.cfg.space} space's supernet runs eager (only nar compiles per path part)")
            return logits_and_loss
        compile_fn = op_compiler(mode, self.device, self.supernet.compiled_part_count())
        if compile_fn is None:
            return logits_and_loss
        self.supernet.compile_parts(compile_fn)
        return compile_fn(logits_and_loss)

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
            set_lr(self.optimizer, self._lr(self.epoch + i / steps))
            images = device_input(images, self.device)
            labels = labels.to(self.device, non_blocking=True)
            with self.autocast():
                features = self.supernet(images, archs[i])
            logits, loss = self._logits_and_loss(features, labels)
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
        if not (torch.isfinite(totals).all() and all_finite(self.params)):  # the same verdict on every rank
            raise FloatingPointError(f"shared-weight loss became {totals[0].item() / totals[2].item()}; "
                                     "lower --lr or check the data")
        freq = self.space.op_freq(archs)  # per slot (NAR) or layer (ENAS): fraction of minibatches per op
        return {"shared_loss": totals[0].item() / totals[2].item(), "train_acc": totals[1].item() / totals[2].item(),
                "op_freq": freq, "diversity": sum(any(row[op] > 0 for row in freq) for op in range(len(freq[0])))}

    def _lr(self, epoch: float) -> float:
        cfg = self.cfg
        return sgdr_lr(epoch, cfg.t0, cfg.t_mult, cfg.lr, cfg.lr_min) * self.lr_factor

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

    @contextlib.contextmanager
    def _stop_when_not_finite(self):
        """A NaN/inf in the shared weights or the controller ends the run before anything of it is saved
        (a NaN supernet would otherwise pick arch.json), like training's "loss became nan"."""
        try:
            yield
        except FloatingPointError as exc:
            kept = f"keeps epoch {self.epoch}" if self.epoch else "was not written yet"
            raise UserError(f"search stopped in epoch {self.epoch + 1}: {exc}; nothing of this epoch was saved "
                            f"({self.run_dir.path / LAST} {kept})") from None

    # ----- checkpoint ------------------------------------------------------------------------
    def save(self) -> None:
        payload = {"format": SEARCH_FORMAT, "epoch": self.epoch, "best": self.best,
                   "supernet": self.supernet.state_dict(), "head": self.head.state_dict(),
                   "optimizer": self.optimizer.state_dict(), "strategy": self.strategy.state_dict(),
                   "arch_gen": self.arch_gen.get_state(), "val_gen": self.val_gen.get_state(),
                   "rng": capture_rng()}
        if self.scaler is not None:
            payload["scaler"] = self.scaler.state_dict()
        save_checkpoint(self.run_dir.path / LAST, payload)
        (self.run_dir.path / OLD_SEARCH_LAST).unlink(missing_ok=True)  # upgraded: last.pt supersedes it

    def load(self) -> None:
        path = resume_file(self.run_dir.path)
        if not path.is_file():
            raise UserError(f"--resume {self.run_dir.path}: no {LAST} there (the run stopped before its "
                            "first epoch ended); start it again with --out (the folder is reused)")
        state = load_checkpoint(path, map_location=self.device)
        if not isinstance(state, dict) or state.get("format") != SEARCH_FORMAT:
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
            self.run_dir.log(describe_lr(cfg.lr, cfg.lr_min, self.lr_factor, cfg.lr_scale, cfg.batch_size,
                                         self.ctx.world_size))
            if self.ctx.distributed:
                self.run_dir.log(self._equivalence())
        done_here = 0
        while self.epoch < cfg.epochs:
            if stop_after_epochs is not None and done_here >= stop_after_epochs:
                return None
            started = time.perf_counter()
            lr = self._lr(self.epoch)
            with self._stop_when_not_finite():
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
        return self.derive()

    def _equivalence(self) -> str:
        """What a data-parallel search equals, in the run log: the recipe changes with the process count."""
        cfg, world = self.cfg, self.ctx.world_size
        steps = len(self.data.train_loader(cfg.batch_size, cfg.seed, 0, self.ctx, 0, False))
        steps = min(steps, cfg.steps_per_epoch) if cfg.steps_per_epoch else steps
        return (f"data-parallel search on {world} processes = one process with --batch-size "
                f"{cfg.batch_size * world} and lr x {self.lr_factor:g}: {steps} shared-weight steps per epoch, "
                f"each averaging {world} x {cfg.batch_size} images; the controller's {cfg.controller_steps} steps "
                f"per epoch run on rank 0 as on one process; derivation's candidates are shared out")

    def score_candidates(self, codes_list: list[list[int]]) -> list[float]:
        """Accuracy of each architecture on the whole val split with the current shared weights: the one
        place derivation scores a list of candidates. Called on rank 0; each distinct architecture is
        scored once, on one rank (the others take their share in _serve_scoring); one whose accuracy with
        these very weights is already known (`derive` reusing pareto.json) is not scored again."""
        known = self.rewards.known
        todo = [codes for codes in codes_list if tuple(codes) not in known]
        if self.ctx.distributed:
            broadcast_object(todo, self.ctx)
        accuracy = {**known, **self._score_shared(todo)}
        return [accuracy[tuple(codes)] for codes in codes_list]

    def _serve_scoring(self) -> None:
        """Ranks other than 0, during derivation: score a share of each list rank 0 sends, until None."""
        while (codes_list := broadcast_object(None, self.ctx)) is not None:
            self._score_shared(codes_list)

    def _score_shared(self, codes_list: list) -> dict[tuple, float]:
        """Whole-val accuracy of each distinct architecture, scored once, on one rank (shared out)."""
        distinct = list(dict.fromkeys(tuple(codes) for codes in codes_list))
        bar = (lambda share: progress(share, total=len(share), desc="derive")) if self.ctx.is_main else None
        scores = shard_and_gather(distinct, self.rewards.accuracy_full, self.ctx, progress=bar)
        if self.ctx.is_main:
            self.run_dir.log(f"derive: {len(distinct)} distinct architectures scored on {self.ctx.world_size} "
                             f"process(es), {len(distinct[::self.ctx.world_size])} on rank 0", echo=False)
        return dict(zip(distinct, scores))

    def derive(self):
        """Score the strategy's candidates on the whole val split; arch.json = the best within the budget.

        Collective: rank 0's strategy proposes the candidates (derivation.derive) and every list it scores
        is shared out over the ranks (score_candidates); the other ranks serve those requests meanwhile.
        """
        cfg = self.cfg
        if not self.ctx.is_main:
            self._serve_scoring()
            return None
        search = {"run_dir": str(self.run_dir.path), "data": cfg.data, "seed": cfg.seed, "epochs": cfg.epochs,
                  "pretrain_epochs": cfg.pretrain_epochs, "derive_samples": cfg.derive_samples, "cost": cfg.cost,
                  "target_macs": cfg.target_macs, "target_latency": cfg.target_latency}
        try:
            derived = derive(self, self.run_dir.path / ARCH_JSON, provenance={"search": search})
        finally:
            if self.ctx.distributed:
                broadcast_object(None, self.ctx)  # the serving ranks' last request: derivation is over
        print(derived.table, flush=True)
        self.run_dir.log("derived architecture:\n" + derived.table, echo=False)
        self.run_dir.log(f"derived: {derived.closeness}")
        self.run_dir.log(f"wrote {self.run_dir.path / ARCH_JSON}, {PARETO_JSON}, {PARETO_PNG}; record: search.csv, "
                         f"search_ops.csv, {CURVES_PNG}, {HEATMAP_PNG}")
        self.record.close()
        return derived.arch


def _num(value) -> str:
    return "-" if value is None else f"{value:.4f}"  # evolution: no child within the budget this epoch



def run_search(cfg: SearchConfig, out: str | Path | None = None, resume: bool = False, force: bool = False,
               stop_after_epochs: int | None = None):
    """Search with a resolved config (the CLI resolves it, as for training): join torchrun's group (if any),
    check the inputs and open the run directory on rank 0 (`out` None: runs/search-<time>), search."""
    with distributed_job(cfg.device) as ctx:
        config, data = None, None
        out = out or broadcast_object(default_run_folder("search"), ctx)
        try:
            if ctx.is_main:
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
            engine = SearchEngine(cfg, RunDir(out), ctx, loader_workers(cfg.workers, ctx.device, cpu_default=0), data)
            return engine.run(resume=resume, stop_after_epochs=stop_after_epochs)
        finally:
            release_ownership(out)
