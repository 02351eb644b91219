"""What a training run writes besides its checkpoints, after every epoch (rank 0 only):

* ``metrics.csv``: one row per epoch (losses, accuracies, lr, seconds, images/s, every beta);
* ``diagnostics.csv`` and ``membranes.npz``: :mod:`training.diagnostics` on a fixed test batch;
* ``tensorboard/``: the same numbers as TensorBoard scalars (``tensorboard --logdir runs``);
* ``plots/``: the paper's figures (:mod:`training.plots`), drawn when the run ends.

Every file is rewritten whole (``lsg_io.files``), so a killed run leaves them complete up to
its last finished epoch, and a resumed run carries the earlier epochs' rows on. With the
checkpoints ``model.pt`` and ``train_state.pt`` these are all the names a run directory holds
(:func:`is_run_entry`): :mod:`lsg_deploy.outputs` recognises a run, and never touches anything
else, by them.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from lsg_io import files

if TYPE_CHECKING:
    import torch

CHECKPOINT_NAME, RESUME_NAME = "model.pt", "train_state.pt"
METRICS_NAME, DIAGNOSTICS_NAME, MEMBRANES_NAME, TENSORBOARD_DIR, PLOTS_DIR = (
    "metrics.csv", "diagnostics.csv", "membranes.npz", "tensorboard", "plots")
#: the files a run writes at its top level (each through a temporary ``.NAME.lsg-tmp-*``)
RUN_FILES = (CHECKPOINT_NAME, RESUME_NAME, METRICS_NAME, DIAGNOSTICS_NAME, MEMBRANES_NAME)
#: TensorBoard's event files: ``events.out.tfevents.<time>.<host>.<pid>.<n>``
EVENTS_PREFIX = "events.out.tfevents."


def is_run_entry(relative: str, is_dir: bool) -> bool:
    """Whether a run writes the entry ``relative`` (a path inside the run directory, ``/``-separated)
    of that kind (directory or regular file): one of :data:`RUN_FILES`, ``plots/`` and its
    figures (:data:`training.plots.NAMES`), ``tensorboard/`` and its event files, or a
    temporary (:func:`lsg_io.files.temporary_of`) of one of those files: a killed writer's,
    which the next writer of that name collects."""
    from training.plots import NAMES as FIGURES

    parts = relative.split("/")
    if len(parts) == 1:
        if is_dir:
            return relative in (PLOTS_DIR, TENSORBOARD_DIR)
        return relative in RUN_FILES or files.temporary_of(relative) in RUN_FILES
    if len(parts) != 2 or is_dir:
        return False
    folder, name = parts
    if folder == PLOTS_DIR:
        return name in FIGURES or files.temporary_of(name) in FIGURES
    return folder == TENSORBOARD_DIR and name.startswith(EVENTS_PREFIX)


def csv_text(rows: list[dict[str, Any]]) -> str:
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    return text.getvalue()


def diagnostic_batch(test, size: int) -> torch.Tensor:
    """The first ``size`` test inputs, stacked (the same every epoch)."""
    import torch

    from training.loop import ArrayDataset, as_dataset

    test = as_dataset(test)
    n = min(size, len(test))
    if isinstance(test, ArrayDataset):
        return test.x[:n]
    return torch.stack([torch.as_tensor(test[i][0]) for i in range(n)])


#: metrics.csv's columns as TensorBoard tags: training and test apart, accuracy in percent as the
#: console prints it (the decays have their own tags, per layer)
TENSORBOARD_TAGS = {"train_loss": ("train/loss", 1), "train_accuracy": ("train/accuracy (%)", 100),
                    "test_loss": ("test/loss", 1), "test_accuracy": ("test/accuracy (%)", 100),
                    "lr": ("train/learning rate", 1), "seconds": ("time/epoch (s)", 1),
                    "images_per_s": ("time/images per s", 1)}


def tensorboard_scalars(row: dict[str, float]) -> dict[str, float]:
    """One metrics row's TensorBoard scalars (:data:`TENSORBOARD_TAGS`)."""
    return {tag: row[key] * scale for key, (tag, scale) in TENSORBOARD_TAGS.items() if key in row}


class RunLog:
    """The run directory's logs; :meth:`epoch` after every epoch, :meth:`close` at the end."""

    def __init__(self, out: Path, test, resumed_epoch: int = 0, tensorboard: bool = True):
        from training.diagnostics import BATCH

        self.out = Path(out)
        self.batch = diagnostic_batch(test, BATCH)
        self.diagnostics: list[dict[str, Any]] = []
        if resumed_epoch and (self.out / DIAGNOSTICS_NAME).is_file():
            with open(self.out / DIAGNOSTICS_NAME, newline="") as f:
                self.diagnostics = [row for row in csv.DictReader(f) if int(row["epoch"]) <= resumed_epoch]
        self.tensorboard, self.resumed_epoch, self.writer = tensorboard, resumed_epoch, None

    def has_diagnostics(self, epoch: int) -> bool:
        """Whether the diagnostics of ``epoch`` are in the log."""
        return any(int(row["epoch"]) == epoch for row in self.diagnostics)

    def epoch(self, model, row: dict[str, float], metrics: list[dict[str, float]]) -> None:
        from training.diagnostics import EDGES_IN_VTH, measure

        epoch = int(row["epoch"])
        stats = measure(model, self.batch.to(next(model.parameters()).device))
        self.diagnostics += [{"epoch": epoch, **s.row()} for s in stats]
        files.write_text(self.out / METRICS_NAME, csv_text(metrics))
        files.write_text(self.out / DIAGNOSTICS_NAME, csv_text(self.diagnostics))
        buffer = io.BytesIO()
        v_th = model.lif_layers()[stats[0].layer].v_th
        np.savez(buffer, layers=np.array([s.layer for s in stats]), counts=np.stack([s.counts for s in stats]),
                 beta=np.array([s.beta for s in stats]), edges=EDGES_IN_VTH * v_th, v_th=v_th, epoch=epoch)
        files.write_bytes(self.out / MEMBRANES_NAME, buffer.getvalue())
        if self.tensorboard and self.writer is None:  # made at the first epoch: a run that fails before leaves none
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(log_dir=str(self.out / TENSORBOARD_DIR), purge_step=self.resumed_epoch + 1)
        if self.writer is not None:
            for tag, value in tensorboard_scalars(row).items():
                self.writer.add_scalar(tag, value, epoch)
            for s in stats:
                for key in ("beta", "alpha", "in_window", "u_std"):
                    self.writer.add_scalar(f"{key}/{s.layer}", getattr(s, key), epoch)
            self.writer.flush()

    def close(self, draw: bool) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None
        if draw and (self.out / MEMBRANES_NAME).is_file():
            from training.plots import draw as draw_plots

            draw_plots(self.out)
