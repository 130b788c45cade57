"""The search record: per-epoch metrics (search.csv), op frequencies (search_ops.csv), PNG plots,
TensorBoard scalars, and the final table printed after derivation.

Plots are redrawn from the CSV files, so a resumed run draws the same curves as an uninterrupted one.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

from facenar.rundir import MetricsCSV

COLUMNS = ["epoch", "phase", "lr", "shared_loss", "train_acc", "reward_mean", "reward_max", "entropy",
           "baseline", "best_reward", "diversity", "best_codes"]
CURVES_PNG = "search_curves.png"
HEATMAP_PNG = "search_ops.png"


class SearchRecord:
    """Everything a search writes per epoch into its run directory."""

    def __init__(self, run_dir: str | Path, candidates: Sequence[str], extra_columns: Sequence[str] = (),
                 slot_name: str = "slot", tensorboard: bool = True,
                 curve: tuple[Sequence[str], str] = (("entropy",), "policy entropy (nats)")):
        self.dir, self.curve = Path(run_dir), curve
        self.candidates, self.slot_name = list(candidates), slot_name
        self.metrics = MetricsCSV(self.dir / "search.csv", COLUMNS + list(extra_columns), key="epoch",
                                  tensorboard="search/" if tensorboard else None)
        self.ops = MetricsCSV(self.dir / "search_ops.csv", ["epoch", slot_name, *self.candidates], key="epoch")

    def truncate_after(self, epoch: int) -> None:
        """Drop rows an interrupted run wrote after its last checkpoint."""
        self.metrics.truncate_after(epoch)
        self.ops.truncate_after(epoch)

    def add_epoch(self, row: dict, op_freq: Sequence[Sequence[float]]) -> None:
        """One search.csv row plus one search_ops.csv row per slot or layer (fraction of minibatches per op)."""
        self.metrics.append(row)
        for slot, freqs in enumerate(op_freq):
            self.ops.append({"epoch": row["epoch"], self.slot_name: slot, **dict(zip(self.candidates, freqs))})

    def plot(self) -> None:
        """search_curves.png (reward, what the strategy learns, loss, lr) and search_ops.png (per-slot op heat-maps)."""
        rows = self.metrics.read()
        if not rows:
            return
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        epochs = [int(r["epoch"]) for r in rows]
        fig, axes = plt.subplots(2, 2, figsize=(10, 7))
        for ax, keys, title in ((axes[0, 0], ("reward_mean", "reward_max", "baseline"), "controller reward"),
                                (axes[0, 1], *self.curve),  # what the strategy learns
                                (axes[1, 0], ("shared_loss",), "shared-weight loss"),
                                (axes[1, 1], ("lr",), "learning rate (SGDR)")):
            for key in keys:
                xs = [e for e, r in zip(epochs, rows) if r[key] != ""]
                ax.plot(xs, [float(r[key]) for r in rows if r[key] != ""], marker=".", label=key)
            ax.set_title(title)
            ax.set_xlabel("epoch")
            if len(keys) > 1:
                ax.legend()
        pretrain = [e for e, r in zip(epochs, rows) if r["phase"] == "pretrain"]
        if pretrain:
            for ax in axes.flat:
                ax.axvspan(0.5, max(pretrain) + 0.5, color="0.9", zorder=0)
        fig.tight_layout()
        save_png(fig, self.dir / CURVES_PNG)
        self._plot_heatmap(plt)

    def _plot_heatmap(self, plt) -> None:
        import numpy as np

        rows = self.ops.read()
        epochs = sorted({int(r["epoch"]) for r in rows})
        slots = sorted({int(r[self.slot_name]) for r in rows})
        grid = np.zeros((len(self.candidates), len(slots), len(epochs)))
        for r in rows:
            for k, name in enumerate(self.candidates):
                grid[k, int(r[self.slot_name]), epochs.index(int(r["epoch"]))] = float(r[name])
        fig, axes = plt.subplots(1, len(self.candidates), figsize=(3.2 * len(self.candidates), 4), squeeze=False)
        for k, name in enumerate(self.candidates):
            ax = axes[0, k]
            image = ax.imshow(grid[k], aspect="auto", origin="lower", vmin=0, vmax=1, cmap="viridis",
                              extent=(epochs[0] - 0.5, epochs[-1] + 0.5, -0.5, len(slots) - 0.5))
            ax.set_title(f"P({name})")
            ax.set_xlabel("epoch")
            if k == 0:
                ax.set_ylabel(self.slot_name)
        fig.colorbar(image, ax=axes[0, :].tolist(), shrink=0.8, label="fraction of sampled architectures")
        save_png(fig, self.dir / HEATMAP_PNG)

    def close(self) -> None:
        self.metrics.close()


def save_png(fig, path: Path) -> None:
    from facenar_runtime.atomic import atomic_path

    import matplotlib.pyplot as plt

    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=80)
    plt.close(fig)


def format_final_table(arch_table: str, summary: dict) -> str:
    """The search space's table of the derived architecture, then its val-split reward next to the
    greedy, baseline and random ones."""
    lines = [arch_table, ""]
    for label, key in (("refined architecture", "reward"), ("greedy architecture", "greedy_reward"),
                       ("baseline (all conv3x3)", "baseline_reward"),
                       (f"mean of {summary.get('random_count', 0)} random", "random_mean_reward")):
        if summary.get(key) is not None:
            lines.append(f"val reward, {label:<24} {summary[key]:.4f}")
    return "\n".join(lines)
