"""Training configuration: one frozen dataclass, loadable from TOML, checked on construction."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import tomllib

from training.neuron import MODES

LOSSES = ("ce", "tet")
DATASETS = ("digits",)


@dataclass(frozen=True)
class TrainConfig:
    mode: str = "lsg"  #: lsg | trainable-decay | fixed
    alpha: float = 1.0  #: surrogate width in the fixed and trainable-decay modes
    beta_init: float = 0.2
    v_th: float = 0.5
    timesteps: int = 4
    epochs: int = 40
    batch_size: int = 64
    lr: float = 2e-3
    weight_decay: float = 1e-4
    seed: int = 0
    channels: tuple[int, ...] = (16, 32)
    hidden: int = 128
    loss: str = "ce"  #: ce on the time-averaged readout, or tet (per-step CE, Deng et al. 2022)
    dataset: str = "digits"
    test_fraction: float = 0.2

    def __post_init__(self) -> None:
        checks = [
            (self.mode in MODES, f"mode must be one of {', '.join(MODES)}, got {self.mode!r}"),
            (self.loss in LOSSES, f"loss must be one of {', '.join(LOSSES)}, got {self.loss!r}"),
            (self.dataset in DATASETS, f"dataset must be one of {', '.join(DATASETS)}, got {self.dataset!r}"),
            (self.alpha > 0, f"alpha must be positive, got {self.alpha}"),
            (0 < self.beta_init < 1, f"beta_init must lie in (0, 1), got {self.beta_init}"),
            (self.v_th > 0, f"v_th must be positive, got {self.v_th}"),
            (self.timesteps >= 1, f"timesteps must be >= 1, got {self.timesteps}"),
            (self.epochs >= 1, f"epochs must be >= 1, got {self.epochs}"),
            (self.batch_size >= 1, f"batch_size must be >= 1, got {self.batch_size}"),
            (self.lr > 0, f"lr must be positive, got {self.lr}"),
            (self.weight_decay >= 0, f"weight_decay must be >= 0, got {self.weight_decay}"),
            (len(self.channels) >= 1 and min(self.channels) >= 1, f"channels must be positive, got {self.channels}"),
            (self.hidden >= 1, f"hidden must be >= 1, got {self.hidden}"),
            (0 < self.test_fraction < 1, f"test_fraction must lie in (0, 1), got {self.test_fraction}"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(message)

    def to_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown config keys: {', '.join(unknown)}")
        values = dict(values)
        if "channels" in values:
            values["channels"] = tuple(int(c) for c in values["channels"])
        return cls(**values)

    @classmethod
    def from_toml(cls, path: Path) -> TrainConfig:
        """Read ``[train]`` (or the top level) of a TOML file."""
        try:
            doc = tomllib.loads(Path(path).read_text())
        except FileNotFoundError:
            raise ValueError(f"config file {path} not found") from None
        except tomllib.TOMLDecodeError as exc:
            raise ValueError(f"config file {path} is not valid TOML: {exc}") from None
        return cls.from_dict(doc.get("train", doc))

    def replace(self, **overrides: Any) -> TrainConfig:
        return dataclasses.replace(self, **{k: v for k, v in overrides.items() if v is not None})
