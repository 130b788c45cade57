"""Model checkpoints that carry their architecture, so verify/export need nothing but the file.

The arch is stored as a plain dict (not an Arch object) so the file loads with
torch.load(weights_only=True): opening a checkpoint can never run code from it.
"""
from __future__ import annotations

from pathlib import Path

from torch import nn

from data_tools.cli import UserError
from facenar.arch import Arch
from facenar.backbone import IResNet, build_child
from facenar.rundir import load_checkpoint, save_checkpoint

FORMAT = "facenar-checkpoint-v1"
RESERVED = ("format", "arch", "model")


def unwrap(model: nn.Module) -> nn.Module:
    """The bare network inside DDP / DataParallel / torch.compile wrappers."""
    while True:
        inner = getattr(model, "module", None) or getattr(model, "_orig_mod", None)
        if not isinstance(inner, nn.Module):
            return model
        model = inner


def save_model(path: str | Path, arch: Arch, model: nn.Module, extra: dict | None = None) -> None:
    """Atomically write {"format", "arch", "model": state_dict, **extra}."""
    extra = dict(extra or {})
    clash = sorted(set(extra) & set(RESERVED))
    if clash:
        raise ValueError(f"extra keys {clash} are reserved in a facenar checkpoint")
    payload = {"format": FORMAT, "arch": arch.to_dict(), "model": unwrap(model).state_dict(), **extra}
    save_checkpoint(path, payload)


def load_model(path: str | Path, map_location="cpu") -> tuple[IResNet, Arch, dict]:
    """(child network in eval mode with the stored weights, its Arch, the whole payload)."""
    payload = load_checkpoint(path, map_location=map_location)
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise UserError(f"{path} is not a {FORMAT} file (no matching 'format' entry); "
                        "pass a checkpoint written by facenar.train or facenar.checkpoint.save_model")
    try:
        arch = Arch.from_dict(payload.get("arch"))
    except UserError as exc:
        raise UserError(f"{path}: stored architecture is invalid ({exc})") from None
    model = build_child(arch)
    state = payload.get("model")
    if not isinstance(state, dict):
        raise UserError(f"{path} has no model state_dict")
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:  # missing/unexpected keys or a shape mismatch
        detail = " ".join(str(exc).split())[:300]
        raise UserError(f"{path}: weights do not match the stored architecture ({detail})") from None
    device = next(iter(state.values())).device if state else None
    return model.to(device).eval(), arch, payload
