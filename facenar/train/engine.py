"""Training engine for a fixed architecture: the task's head and loss, DDP, AMP, resume.

One process or many (torchrun): the backbone is wrapped in DDP, the head (face: Partial FC with
sharded class centres) comes from the task with its own checkpoint state, the data order is a
seeded permutation per epoch split like DistributedSampler's. Everything a resumed run needs
(weights, head, optimizer, scaler, position in the epoch, every RNG) is in RUN_DIR/last.pt, so a
stop or a kill costs only the steps after it. The task's evaluation picks best.pt, on the benchmarks
themselves, so its figures are optimistic: the summary's headline is last.pt's.
"""
from __future__ import annotations

import time
from dataclasses import asdict
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from facenar_runtime.cli import progress
from facenar_runtime.errors import UserError
from facenar.space.networks import build_child
from facenar.checkpoint import (BEST, LAST, gather_rng, load_checkpoint, restore_rng, restoring, save_model,
                                seed_everything)
from facenar.config import format_differences
from facenar.dist import DistContext, amp_dtype, barrier, broadcast_object, distributed_job
from facenar.rundir import MetricsCSV, RunDir, default_run_folder, read_run_config, release_ownership
from facenar.schedule import set_lr, describe_lr
from facenar.speed import Compiled, channels_last_input, to_channels_last
from facenar.tasks import get_task
from facenar.train.config import TrainConfig, lr_at, lr_factor, resolve_arch
from facenar.data import EpochSampler, SeededSamples, device_input, loader_workers, make_loader


class TrainStep:
    """One optimisation step of backbone + task head (the optimizers, scaler, clipping), and their state.

    Two SGD optimizers: the backbone's state is identical on every rank; the head's may be sharded
    (Partial FC), so the head itself says what of it goes into a checkpoint.
    """

    def __init__(self, backbone: torch.nn.Module, head: torch.nn.Module, cfg: TrainConfig, ctx: DistContext):
        self.ctx, self.head, self.module = ctx, head, backbone
        self.channels_last = cfg.channels_last and to_channels_last(backbone, ctx.device, training=True,
                                                                     label="network")
        self.backbone = backbone
        if ctx.distributed:
            ids = [ctx.device.index] if ctx.device.type == "cuda" else None
            self.backbone = torch.nn.parallel.DistributedDataParallel(backbone, device_ids=ids)
        sgd = dict(lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
        self.opt_backbone = torch.optim.SGD(backbone.parameters(), **sgd)
        self.opt_head = torch.optim.SGD(head.parameters(), **sgd)
        self.amp_dtype = amp_dtype(cfg.amp, ctx.device)
        self.scaler = torch.amp.GradScaler(ctx.device.type, enabled=self.amp_dtype == torch.float16)
        self.grad_clip = cfg.grad_clip
        # one compiled graph for network + head; under DDP the DDP module alone (torch's supported form;
        # a sharded head's collectives stay eager). Checkpoints keep reading self.module: same format.
        net = Compiled(self.backbone, cfg.compile, ctx.device, "network", training=True) if ctx.distributed \
            else self.backbone
        self.loss = Compiled(_Loss(net, head, self.amp_dtype, ctx.device.type),
                             "off" if ctx.distributed else cfg.compile, ctx.device, "network and head", training=True)
        self.compiled = net if ctx.distributed else self.loss

    def step(self, images: torch.Tensor, labels: torch.Tensor, lr: float) -> torch.Tensor:
        """One SGD step on a local batch; returns the global-batch loss, on the device (reading it would
        wait for the GPU at every step: the caller checks it for NaN/inf only at its log rows and saves)."""
        dev = self.ctx.device
        images, labels = device_input(images, dev), labels.to(dev, non_blocking=True)
        images = channels_last_input(images, self.channels_last)
        set_lr(self.opt_backbone, lr)
        set_lr(self.opt_head, lr)
        self.backbone.train()
        loss = self.compiled.attempt(lambda: self._forward_backward(images, labels), undo=self._zero_grad)
        if self.grad_clip > 0:
            self.scaler.unscale_(self.opt_backbone)
            torch.nn.utils.clip_grad_norm_(self.module.parameters(), self.grad_clip)
        self.scaler.step(self.opt_backbone)
        self.scaler.step(self.opt_head)
        self.scaler.update()
        self._zero_grad()
        return loss

    def _forward_backward(self, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        loss = self.loss(images, labels)
        self.scaler.scale(loss).backward()
        return loss.detach()

    def _zero_grad(self) -> None:
        self.opt_backbone.zero_grad(set_to_none=True)
        self.opt_head.zero_grad(set_to_none=True)

    def state(self) -> dict | None:
        """Collective: optimizer/scaler state and the head's checkpoint state, on rank 0."""
        head = self.head.checkpoint_state(self.opt_head)
        if not self.ctx.is_main:
            return None
        return {**head, "optimizer": self.opt_backbone.state_dict(), "scaler": self.scaler.state_dict()}

    def load_state(self, payload: dict) -> None:
        """Restore from a checkpoint written on any number of processes (a sharded head re-shards)."""
        self.module.load_state_dict(payload["model"])
        self.head.load_checkpoint_state(payload, self.opt_head)
        self.opt_backbone.load_state_dict(payload["optimizer"])
        if self.scaler.is_enabled() and payload.get("scaler"):
            self.scaler.load_state_dict(payload["scaler"])


class _Loss(torch.nn.Module):
    """The loss of a batch as one module, so torch.compile sees network and head together."""

    def __init__(self, backbone, head: torch.nn.Module, amp: torch.dtype | None, device_type: str):
        super().__init__()
        self.backbone, self.head, self.amp_dtype, self.device_type = backbone, head, amp, device_type

    def forward(self, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        with torch.autocast(self.device_type, dtype=self.amp_dtype or torch.float32,
                            enabled=self.amp_dtype is not None):
            embeddings = self.backbone(images)
        return self.head(embeddings.float(), labels)


def train(cfg: TrainConfig, out: str | Path | None = None, resume: bool = False, force: bool = False) -> dict:
    """Train (or resume, when `resume`: `out` is the run directory) and return a summary dict."""
    with distributed_job(cfg.device) as ctx:
        # rank 0's clock names the default run directory, so every rank writes to the same one
        run_path = Path(out) if out else broadcast_object(default_run_folder("train"), ctx)
        try:
            return TrainEngine(cfg, ctx, run_path, resume, force).loop()
        finally:
            release_ownership(run_path)


class TrainEngine:
    """The training engine: one job in a run directory: set up fresh or from last.pt, then loop, log, verify, checkpoint."""

    def __init__(self, cfg: TrainConfig, ctx: DistContext, path: Path, resume: bool, force: bool):
        self.cfg, self.ctx = cfg, ctx
        self.task = task = get_task(cfg.task)
        self.arch = resolve_arch(cfg)
        self.data_dir, dataset, num_classes = task.train_data(cfg, self.arch.input_size, ctx)
        self.config = {**asdict(cfg), "data": str(self.data_dir), "arch": self.arch.to_dict(),
                       "num_classes": num_classes}
        self.global_batch = cfg.batch_size * ctx.world_size
        self.lr_factor = lr_factor(cfg, self.global_batch)
        self.steps_per_epoch = len(dataset) // self.global_batch
        if self.steps_per_epoch == 0:
            raise UserError(f"{self.data_dir} has {len(dataset)} training images, fewer than one global batch "
                            f"({self.global_batch}); lower --batch-size")
        self.samples = SeededSamples(dataset, cfg.seed)
        self.workers = loader_workers(cfg.workers, ctx.device, cpu_default=2)
        self.sampler = EpochSampler(len(dataset), ctx.rank, ctx.world_size, cfg.seed)

        seed_everything(cfg.seed)  # identical initial weights on every rank and every run
        backbone = build_child(self.arch, dropout=cfg.dropout).to(ctx.device)
        head = task.train_head(cfg, self.arch.embedding_size, num_classes, ctx)
        self.engine = TrainStep(backbone, head.to(ctx.device), cfg, ctx)
        self.step = self.epoch = self.consumed = 0
        self.best, self.best_step, self.verify_step, self.last_figures = -1.0, None, None, None
        self.pending = [0.0, 0]  # loss sum (a device tensor once stepping) and steps since the last train.csv row
        self.bad_step = self.bad_loss = torch.tensor(-1.0, device=ctx.device)  # the first non-finite loss
        self.done_at: dict[str, int] = {}  # step of the latest "last" checkpoint and verification
        self.last_results: dict | None = None
        self.evaluation = task.evaluation(cfg, self.data_dir)
        self.run = self._open_run(path, resume, force)  # after every check: an early error leaves no folder
        self.metrics = MetricsCSV(self.run.path / "train.csv", key="step", columns=[
            "step", "epoch", "lr", "loss", "images_per_s", *self.evaluation.columns],
            tensorboard="" if ctx.is_main else None)
        if resume:
            self._restore()
        else:
            seed_everything(cfg.seed + 1 + ctx.rank)
        if ctx.is_main:
            self._announce(len(dataset), num_classes)

    def _open_run(self, path: Path, resume: bool, force: bool) -> RunDir:
        if resume:
            stored = read_run_config(path).get("arch", {})
            if stored.get("backbone") not in (None, self.arch.backbone):
                raise UserError(f"the architecture given is an {self.arch.backbone}, but run {path} trains an "
                                f"{stored['backbone']}; resume without --arch or start a new run")
            return RunDir.open_resume(path, self.config, ignore=TrainConfig.RESUMABLE, upgrade=TrainConfig.upgrade,
                                      lock=self.ctx.is_main)  # rank 0 owns the run folder for the group
        RunDir.check(path, force, inputs={"--data": self.data_dir, "--arch": self.cfg.arch_file}, lock=self.ctx.is_main)
        barrier(self.ctx)  # every rank has checked before rank 0 creates anything
        if self.ctx.is_main:
            RunDir.create(path, self.config, force=True)
        barrier(self.ctx)
        return RunDir(path)

    def _restore(self) -> None:
        payload = load_checkpoint(self.run.path / LAST, map_location="cpu")  # shards move to the device
        with restoring(self.run.path / LAST):
            self.engine.load_state(payload)
            self.step, self.epoch, self.consumed = payload["step"], payload["epoch"], payload["consumed"]
            self.best, self.best_step = payload.get("best_mean_acc", -1.0), payload.get("best_step")
            self.done_at["last"] = self.step
            verified = payload.get("verified")  # absent in checkpoints written before it was stored
            if isinstance(verified, dict) and verified.get("step") is not None:
                self.done_at["verify"] = self.verify_step = verified["step"]
                self.last_results, self.last_figures = verified.get("results"), verified.get("figures")
            self.pending = list(payload["pending_loss"])
            rng = payload["rng"]
            restore_rng(rng[self.ctx.rank % len(rng)])
        if self.ctx.is_main:
            self.metrics.truncate_after(self.step)
            self.run.log(f"resumed {self.run.path} at step {self.step} (epoch {self.epoch + 1}); "
                         f"checkpoint from {payload['world_size']} process(es), now {self.ctx.world_size}")

    def _announce(self, images: int, classes: int) -> None:
        cfg, ctx = self.cfg, self.ctx
        self.run.log(format_differences(cfg))  # first: a demo or changed run is never mistaken for the paper's
        if cfg.amp != "off" and ctx.device.type != "cuda":
            self.run.log(f"note: --amp {cfg.amp} needs CUDA; training in float32 on the CPU")
        if self.evaluation.missing:
            self.run.log(f"note: {self.evaluation.missing}")
        self.run.log(f"training {self.arch.backbone} (width {self.arch.width}, input {self.arch.input_size}) on "
                     f"{images} images / {classes} classes from {self.data_dir}: {cfg.epochs} epochs x "
                     f"{self.steps_per_epoch} steps, global batch {self.global_batch} on {ctx.world_size} "
                     f"process(es), {ctx.device}; run dir {self.run.path}")
        self.run.log(describe_lr(cfg.lr, cfg.lr_min, self.lr_factor, cfg.lr_scale, cfg.batch_size, ctx.world_size))

    def loop(self) -> dict:
        cfg, ctx = self.cfg, self.ctx
        tick = time.perf_counter()
        # one loader, its workers kept for the whole run: the sampler's keys carry each epoch's order
        loader = make_loader(self.samples, cfg.batch_size, sampler=self.sampler, workers=self.workers,
                             drop_last=True, pin_memory=ctx.device.type == "cuda", persistent=True)
        while self.epoch < cfg.epochs:
            self.sampler.set_epoch(self.epoch, start=self.consumed)
            batches = len(loader)
            for index, (images, labels) in enumerate(epoch_progress(loader, ctx, self.epoch)):
                lr = lr_at(cfg, self._epoch_float()) * self.lr_factor
                loss = self.engine.step(images, labels, lr)
                first_bad = ~torch.isfinite(loss) & (self.bad_step < 0)
                self.bad_step = torch.where(first_bad, self.step + 1, self.bad_step)
                self.bad_loss = torch.where(first_bad, loss, self.bad_loss)
                self.step += 1
                self.consumed += self.global_batch
                epoch_done = index == batches - 1
                if epoch_done:
                    self.epoch, self.consumed = self.epoch + 1, 0
                self.pending = [self.pending[0] + loss, self.pending[1] + 1]
                if self.step % cfg.log_every == 0:
                    self._check_loss()
                    if ctx.is_main:
                        rate = self.pending[1] * self.global_batch / max(time.perf_counter() - tick, 1e-9)
                        self._record({"lr": lr, "loss": float(self.pending[0]) / self.pending[1],
                                      "images_per_s": rate})
                    self.pending, tick = [0.0, 0], time.perf_counter()
                stop = cfg.max_steps is not None and self.step >= cfg.max_steps
                every = cfg.verify_every > 0 and self.step % cfg.verify_every == 0
                self._events(verify=every or (epoch_done and (cfg.verify_every == 0 or self.epoch == cfg.epochs)),
                             last=stop or epoch_done or self.step % cfg.checkpoint_every == 0)
                if stop:
                    if ctx.is_main:
                        self.run.log(f"stopped at step {self.step} (--max-steps); continue with --resume {self.run.path}")
                    return self._summary(stopped=True)
            if batches == 0:  # too little left of this epoch for one global batch (resumed on more processes)
                self.epoch, self.consumed = self.epoch + 1, 0
        self._events(verify=True, last=True)  # no-ops unless the last epoch had no batch left
        return self._summary(stopped=False)

    def _check_loss(self) -> None:
        """Stop on a NaN/inf loss before anything is logged or saved (the one read of the loss: a sync)."""
        step = int(self.bad_step)
        if step >= 0:
            raise UserError(f"loss became {float(self.bad_loss)} at step {step}; stopped without saving it: "
                            f"{self.run.path}/{LAST} keeps step {self.done_at.get('last', 'none')}; lower --lr "
                            "or check the data")

    def _epoch_float(self) -> float:
        return self.epoch + self.consumed / (self.steps_per_epoch * self.global_batch)

    def _events(self, verify: bool, last: bool) -> None:
        """Verification (rank 0) and checkpoints; the state gathering is collective, so all ranks come."""
        verify = verify and self.evaluation.available and self.done_at.get("verify") != self.step
        last = last and self.done_at.get("last") != self.step
        if not (verify or last):
            return
        self._check_loss()
        extra = self._extra()
        if self.ctx.is_main:
            if verify:
                results, mean = self._verify()
                if mean > self.best:
                    self.best, self.best_step = mean, self.step
                    save_model(self.run.path / BEST, self.arch, self.engine.module,
                               {**extra, "best_mean_acc": mean, "best_step": self.step, "verify": results})
                    self.run.log(f"best {self.evaluation.score_name} so far {mean:.2f}% -> {self.run.path / BEST} "
                                 "(selected on the benchmarks: optimistic)")
            if last:  # with the latest evaluation: a resumed finished run must not verify (and record) it again
                verified = {"step": self.verify_step, "results": self.last_results, "figures": self.last_figures}
                save_model(self.run.path / LAST, self.arch, self.engine.module,
                           {**extra, "best_mean_acc": self.best, "best_step": self.best_step, "verified": verified})
                self.run.log(f"checkpoint: step {self.step} -> {self.run.path / LAST}")
        self.done_at.update({"verify": self.step} if verify else {})
        self.done_at.update({"last": self.step} if last else {})
        barrier(self.ctx)

    def _extra(self) -> dict | None:
        state = self.engine.state()
        rng = gather_rng(self.ctx)
        if not self.ctx.is_main:
            return None
        return {**state, "step": self.step, "epoch": self.epoch, "consumed": self.consumed, "rng": rng,
                "pending_loss": [float(self.pending[0]), self.pending[1]],
                "config": self.config, "world_size": self.ctx.world_size}

    def _verify(self) -> tuple[dict, float]:
        """The task's evaluation: its results, and the score that keeps best.pt."""
        model = self.task.scored_model(self.engine.module, self.engine.head)
        results, row, mean = self.evaluation.run(model, str(self.ctx.device), self.arch.input_size,
                                                 self.cfg.verify_batch)
        self._record(row)
        self.run.log(f"step {self.step} {self.evaluation.describe(results, mean)}")
        self.last_results, self.verify_step = results, self.step
        self.last_figures = self.evaluation.describe(results, mean)
        return results, mean

    def _record(self, values: dict) -> None:
        values = {name: float(value) for name, value in values.items()}
        self.metrics.append({"step": self.step, "epoch": round(self._epoch_float(), 4), **values})

    def _summary(self, stopped: bool) -> dict:
        self._check_loss()
        self.metrics.close()
        summary = {"run_dir": str(self.run.path), "step": self.step, "epoch": self._epoch_float(), "stopped": stopped,
                   "best_mean_acc": self.best if self.best >= 0 else None, "best_step": self.best_step,
                   "verify": self.last_results, "verify_step": self.verify_step,
                   "figures": self.last_figures, "score_name": self.evaluation.score_name}
        if self.ctx.is_main:
            for line in final_figures(summary):
                self.run.log(line, echo=False)  # the command prints the same lines as its summary
        return summary


def final_figures(summary: dict) -> list[str]:
    """The headline: the last checkpoint's evaluation; best.pt only as a labelled, optimistic extra
    (it was picked on the very test splits the figures come from)."""
    lines = []
    text, at, step = summary.get("figures"), summary.get("verify_step"), summary["step"]
    if text:
        where = f"last.pt, step {step}" if at == step else f"latest evaluation, step {at}; last.pt is step {step}"
        lines.append(f"final figures ({where}): {text}")
    if summary.get("best_mean_acc") is not None:
        lines.append(f"best.pt: {summary['score_name']} {summary['best_mean_acc']:.2f}% at step "
                     f"{summary.get('best_step')}, selected on the benchmarks (optimistic; report the final figures "
                     "above)")
    return lines


def epoch_progress(loader: DataLoader, ctx: DistContext, epoch: int):
    return progress(loader, total=len(loader), desc=f"epoch {epoch + 1}") if ctx.is_main else loader
