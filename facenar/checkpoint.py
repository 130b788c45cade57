"""Checkpoints: atomic save, safe load, every RNG state, and model files that carry their architecture.

Everything is tensors and plain values (the arch as a dict, not an Arch object) so files load with
torch.load(weights_only=True): opening a checkpoint can never run code from it. Search and
training save and restore through these functions, so a resume restores the same things in both.
"""
from __future__ import annotations

import contextlib
import random
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.distributed as torch_dist
from torch import nn

from facenar_runtime.atomic import atomic_path
from facenar_runtime.errors import UserError
from facenar.space.arch import Arch
from facenar.space.networks import build_child
from facenar.dist import DistContext

FORMAT = "facenar-checkpoint-v1"
# the file names of every run folder, search or training: the state to resume from, the best model so far
LAST, BEST = "last.pt", "best.pt"
SEARCH_FORMAT = "facenar-search-v1"  # the `format` of a search's resume state (supernet, controller): not a model
OLD_SEARCH_LAST = "checkpoint.pt"    # a search's resume state before the file names were shared


def resume_file(run: str | Path) -> Path:
    """The state a run resumes from: RUN/last.pt, or a search run's checkpoint.pt written before the
    names were shared (the upgrade path: the next save writes last.pt and removes it)."""
    run = Path(run)
    old = run / OLD_SEARCH_LAST
    return old if old.is_file() and not (run / LAST).is_file() else run / LAST


RESERVED = ("format", "arch", "model", "dropout")


def save_checkpoint(path: str | Path, payload: dict) -> None:
    """torch.save through a temporary file, so a kill never leaves a truncated checkpoint."""
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)


def load_checkpoint(path: str | Path, map_location="cpu") -> dict:
    """Load a facenar checkpoint safely (weights_only: no arbitrary code from the file)."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"checkpoint {path} does not exist")
    try:
        with warnings.catch_warnings():  # its pickle-protocol warning would be a second line for a foreign file
            warnings.simplefilter("ignore")
            return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # torch raises many types for corrupt or foreign files
        raise UserError(f"{path} is not a facenar checkpoint or is not safe to load ({load_failure(exc)})") from None


def load_failure(exc: Exception) -> str:
    """The reason in torch.load's error, without its advice to retry with weights_only=False.

    That advice would run the file's code: wrong for a file nobody vouches for.
    """
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    unpickler = [line.split("error:", 1)[1].strip() for line in lines if line.startswith("WeightsUnpickler error:")]
    safe = [line for line in lines if "weights_only" not in line and "file an issue" not in line]
    reason = (unpickler or safe or [type(exc).__name__])[0]
    return f"{type(exc).__name__}: {reason}"[:300]


@contextlib.contextmanager
def restoring(path: str | Path):
    """Wrap the restore of a run's state from `path`: a damaged file, or one from another run
    (another architecture's last.pt copied in, missing keys, wrong shapes), becomes one line naming it."""
    try:
        yield
    except (KeyError, IndexError, TypeError, ValueError, AttributeError, RuntimeError) as exc:
        detail = " ".join(str(exc).split())[:240]
        what = f"missing entry {detail}" if isinstance(exc, KeyError) else f"{type(exc).__name__}: {detail}"
        raise UserError(f"{path} does not hold this run's state ({what}); it is damaged or from "
                        "another run. Restore the right file or start a new run") from None


def capture_rng() -> dict:
    """Every global RNG as tensors and plain values (loadable with weights_only=True)."""
    version, mt_state, gauss = random.getstate()
    np_name, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state()
    state = {
        "python": [version, list(mt_state), gauss],
        "numpy": [np_name, torch.from_numpy(np_keys.astype(np.int64)), int(np_pos), int(np_has_gauss), float(np_gauss)],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict) -> None:
    """Inverse of capture_rng (the state may have been mapped to a GPU by load_checkpoint)."""
    state = to_cpu(state)
    version, mt_state, gauss = state["python"]
    random.setstate((version, tuple(mt_state), gauss))
    np_name, np_keys, np_pos, np_has_gauss, np_gauss = state["numpy"]
    np.random.set_state((np_name, np_keys.numpy().astype(np.uint32), np_pos, np_has_gauss, np_gauss))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        # one state per GPU the saving process saw; a resume may see fewer (4 of an 8-GPU run's, another
        # CUDA_VISIBLE_DEVICES) or more: restore the devices both have, leave the rest as they are
        for index, device_state in enumerate(state["cuda"][:torch.cuda.device_count()]):
            torch.cuda.set_rng_state(device_state, index)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def gather_rng(ctx: DistContext) -> list:
    """Every rank's RNG states in rank order (a resumed rank r continues stream r mod the old count)."""
    state = capture_rng()
    if not ctx.distributed:
        return [state]
    states = [None] * ctx.world_size
    torch_dist.all_gather_object(states, state)
    return states


def to_cpu(obj):
    """Tensors nested in dicts/lists moved to the CPU (RNG states must be CPU tensors)."""
    if isinstance(obj, torch.Tensor):
        return obj.cpu()
    if isinstance(obj, dict):
        return {k: to_cpu(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [to_cpu(v) for v in obj]
    return obj


def unwrap(model: nn.Module) -> nn.Module:
    """The bare network inside DDP / DataParallel / torch.compile wrappers."""
    while True:
        inner = getattr(model, "module", None) or getattr(model, "_orig_mod", None)
        if not isinstance(inner, nn.Module):
            return model
        model = inner


def save_model(path: str | Path, arch: Arch, model: nn.Module, extra: dict | None = None) -> None:
    """Atomically write {"format", "arch", "model": state_dict, "dropout", **extra}.

    The "E" head's dropout is not in the state_dict; stored, it lets load_model rebuild the very same
    network (inactive in eval mode, but a fine-tune or a re-export must see the trained value).
    """
    extra = dict(extra or {})
    clash = sorted(set(extra) & set(RESERVED))
    if clash:
        raise ValueError(f"extra keys {clash} are reserved in a facenar checkpoint")
    network = unwrap(model)
    dropout = getattr(getattr(network, "dropout", None), "p", 0.0)
    payload = {"format": FORMAT, "arch": arch.to_dict(), "model": network.state_dict(), "dropout": float(dropout),
               **extra}
    save_checkpoint(path, payload)


def load_model(path: str | Path, map_location="cpu") -> tuple[nn.Module, Arch, dict]:
    """(child network in eval mode with the stored weights, its Arch, the whole payload)."""
    payload = load_checkpoint(path, map_location=map_location)
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise UserError(f"{path} is not a {FORMAT} file (no matching 'format' entry); "
                        "pass a checkpoint written by facenar.train or facenar.checkpoint.save_model")
    try:
        arch = Arch.from_dict(payload.get("arch"))
    except UserError as exc:
        raise UserError(f"{path}: stored architecture is invalid ({exc})") from None
    dropout = payload.get("dropout", 0.0)  # files written before it was stored trained without
    if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) or not 0 <= dropout < 1:
        raise UserError(f"{path}: stored dropout {dropout!r} is not a rate in [0, 1)")
    model = build_child(arch, dropout=float(dropout))
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
