"""Where the learned width can matter: the seed paper's Fig. 5 at initialisation, per layer.

For each ablation row (:data:`training.ablate.ROWS`: its neuron mode, fixed width and starting
decay), one network is built from the same seed and run forward and backward on the same batch of
training samples, in training mode (tdBN on the batch's statistics, as in the first step of
training). Per LIF layer it reports:

* ``grad_norm``: the L2 norm of the loss gradient reaching the layer's synaptic weights (a
  residual block's inner conv for ``<block>.conv1``, its second conv for ``<block>``): in a deep
  plain stack every layer's gradient crosses every deeper layer's surrogate, so a window too
  narrow starves the early layers and one too wide inflates them (the paper's argument for LSG);
* ``in_window``: the fraction of the layer's membranes (all steps and neurons, before reset)
  inside the surrogate's gradient window ``|u - v_th| < alpha / 2``;
* ``alpha`` and ``beta``: the layer's width and decay at initialisation.

Rows that start from the same decay run the same forward pass, so they differ only in the window:
``fixed-a1`` and ``decay-a1`` give identical gradients (a trainable decay changes nothing before
the first step). How beta and the width move over training (Figs. 6 and 7) is in every run's
``diagnostics.csv`` and ``plots/`` (:mod:`training.diagnostics`, :mod:`training.plots`).

Run it as ``python -m training.width_study --out DIR`` (``--help`` for the options); it writes
``DIR/width_study.json``, ``DIR/width_study.md`` and the figure ``DIR/width_study.png``.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lsg_io import files
from training.ablate import ROWS, row_overrides
from training.config import TrainConfig
from training.diagnostics import recorded_membranes
from training.loop import loss_fn, seed_everything
from training.model import ResidualBlock, SpikingNet
from training.models import build_model

#: the rows compared by default: Table 2's widths (fixed decay), the widest fixed width inside LSG's
#: range, and LSG from two starting decays
DEFAULT_ROWS = ("fixed-a0.5", "fixed-a1", "fixed-a2.5", "fixed-a5", "decay-a1", "decay-a1.414", "lsg", "lsg-b0.8")


def synaptic_weights(model: SpikingNet) -> dict[str, torch.Tensor]:
    """Every LIF layer's synaptic weight, by the layer's name (:meth:`SpikingNet.lif_layers`)."""
    weights: dict[str, torch.Tensor] = {}
    for name, block in model.blocks.items():
        if isinstance(block, ResidualBlock):
            weights[f"{name}.conv1"] = block.conv1.conv.weight
            weights[name] = block.conv2.conv.weight
        elif hasattr(block, "lif"):
            weights[name] = block.conv.weight if hasattr(block, "conv") else block.linear.weight
    return weights


def at_init(config: TrainConfig, x: torch.Tensor, y: torch.Tensor, classes: int) -> list[dict[str, Any]]:
    """One row per LIF layer of ``config``'s network at initialisation (seeded by ``config.seed``):
    its decay, width, in-window fraction and weight-gradient norm on the batch ``(x, y)``."""
    seed_everything(config.seed)
    model = build_model(config, tuple(x.shape[-3:]), classes).train()
    with recorded_membranes(model) as (layers, seen):
        loss = loss_fn(model(x), y, config.loss, config.tet_lambda, config.v_th)
    loss.backward()
    weights = synaptic_weights(model)
    rows = []
    for name, lif in layers.items():
        u = torch.cat([m.flatten() for m in seen[lif]])
        with torch.no_grad():
            params = lif.params()
        alpha = float(params.alpha)
        rows.append({"layer": name, "beta": float(params.beta), "alpha": alpha,
                     "in_window": float(((u - lif.v_th).abs() < alpha / 2).double().mean()),
                     "grad_norm": float(weights[name].grad.norm())})
    return rows


def study(base: TrainConfig, rows: Sequence[str], x: torch.Tensor, y: torch.Tensor, classes: int) -> dict[str, Any]:
    """:func:`at_init` for every ablation row in ``rows`` on ``base``'s network and seed."""
    return {"config": base.to_dict(), "batch": len(y),
            "rows": {name: at_init(base.replace(**row_overrides(name)), x, y, classes) for name in rows}}


def markdown(result: dict[str, Any]) -> str:
    """One table per quantity: layers down, rows across."""
    c, names = result["config"], list(result["rows"])
    layers = [r["layer"] for r in result["rows"][names[0]]]
    lines = [f"# Gradients at initialisation: {c['arch']} ({len(layers)} LIF layers) on {c['dataset']}, "
             f"T = {c['timesteps']}, seed {c['seed']}, one batch of {result['batch']} training samples", ""]
    for key, title, fmt in (("grad_norm", "L2 norm of the loss gradient on each layer's synaptic weights", ".3g"),
                            ("in_window", "fraction of membranes inside the surrogate window |u - v_th| < alpha/2",
                             ".3f")):
        lines += [f"## {title}", "", "| layer | " + " | ".join(f"`{n}`" for n in names) + " |",
                  "|---|" + "---:|" * len(names)]
        for i, layer in enumerate(layers):
            lines.append(f"| {layer} | " + " | ".join(format(result["rows"][n][i][key], fmt) for n in names) + " |")
        lines.append("")
    lines += ["Widths at initialisation: " + ", ".join(f"`{n}` alpha {result['rows'][n][0]['alpha']:.3f}"
                                                       for n in names) + "."]
    return "\n".join(lines) + "\n"


def figure_png(result: dict[str, Any]) -> bytes:
    """Two panels, layer on x: the gradient norm (log scale) and the in-window fraction per row
    (LSG rows thick, trained-decay rows dashed)."""
    import io

    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(11, 4.2))
    FigureCanvasAgg(fig)
    grad, window = fig.subplots(1, 2)
    palette = [f"C{i % 10}" for i in range(len(result["rows"]))]
    for colour, (name, rows) in zip(palette, result["rows"].items(), strict=True):
        lsg = ROWS[name].mode == "lsg"  # thick, the rest thin; one colour per row
        style = {"lw": 2.4 if lsg else 1.0, "ls": "-" if lsg or ROWS[name].mode == "fixed" else "--", "color": colour}
        depth = np.arange(1, len(rows) + 1)
        grad.semilogy(depth, [max(r["grad_norm"], 1e-30) for r in rows], marker=".", label=name, **style)
        window.plot(depth, [r["in_window"] for r in rows], marker=".", label=name, **style)
    grad.set(xlabel="LIF layer (input to output)", ylabel="|dL/dW| at initialisation", title="Fig. 5: gradient norm")
    window.set(xlabel="LIF layer (input to output)", ylabel="fraction of membranes in the window",
               title="Fig. 5: membranes inside the surrogate window", ylim=(0, 1))
    window.legend(fontsize=7, ncol=2)
    c = result["config"]
    fig.suptitle(f"{c['arch']} on {c['dataset']}, T={c['timesteps']}, seed {c['seed']}, batch {result['batch']}",
                 fontsize=9)
    fig.tight_layout(rect=(0, 0, 1, 0.94))
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    return buffer.getvalue()


def main(argv: Sequence[str] | None = None) -> int:
    from training.data import DataSpec, load

    parser = argparse.ArgumentParser(prog="python -m training.width_study", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="directory for width_study.{json,md,png}")
    parser.add_argument("--depth", type=int, default=20, help="conv layers of the digits-plain stack (default 20)")
    parser.add_argument("--channels", type=int, default=16, help="channels of every conv layer (default 16)")
    parser.add_argument("--dataset", choices=("digits", "digits-events"), default="digits")
    parser.add_argument("--timesteps", type=int, default=4)
    parser.add_argument("--batch", type=int, default=256, help="training samples in the batch (default 256)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--rows", default=",".join(DEFAULT_ROWS), help="ablation rows, comma-separated")
    args = parser.parse_args(argv)
    rows = [r for r in args.rows.split(",") if r]
    unknown = [r for r in rows if r not in ROWS]
    if unknown or not rows:
        parser.error(f"--rows must name rows among {', '.join(ROWS)}, got {args.rows!r}")
    if not 1 <= args.depth <= 64 or not 1 <= args.channels <= 256 or not 1 <= args.batch <= 1437:
        parser.error("--depth must lie in [1, 64], --channels in [1, 256], --batch in [1, 1437]")
    try:
        base = TrainConfig(arch="digits-plain", channels=(args.channels,) * args.depth, dataset=args.dataset,
                           timesteps=args.timesteps, seed=args.seed)
    except ValueError as exc:
        parser.error(str(exc))
    train, _, classes = load(DataSpec(dataset=args.dataset), timesteps=args.timesteps)
    x = torch.as_tensor(train.analog[: args.batch])
    y = torch.as_tensor(train.labels[: args.batch])
    result = study(base, rows, x, y, classes)
    args.out.mkdir(parents=True, exist_ok=True)
    files.write_text(args.out / "width_study.json", json.dumps(result, indent=2) + "\n")
    files.write_text(args.out / "width_study.md", markdown(result))
    files.write_bytes(args.out / "width_study.png", figure_png(result))
    print(markdown(result), end="")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
