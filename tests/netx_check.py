"""Opt-in check: lava-dl's own netx loads ``model.net`` and, on Lava's CPU backend (fixed_pt),
computes exactly :func:`hardware.reference.run` -- every hidden spike and every readout membrane
at every step, compared with ``==``.

Two environments, two steps (``make check-netx``)::

    # main environment: a netx-exact bundle (biases on netx's bias_exp = 6 grid) + test pixels
    .venv/bin/python tests/netx_check.py prepare --checkpoint runs/digits/model.pt \\
        --bundle /tmp/netx-check/bundle --inputs /tmp/netx-check/inputs.npz
    # the netx environment (Python 3.10, lava-dl 0.6.0, torch < 2.4): run and compare
    PYTHONPATH=. .venv-netx/bin/python tests/netx_check.py run --bundle /tmp/netx-check/bundle \\
        --inputs /tmp/netx-check/inputs.npz --random 8

``prepare --bundle DIR`` without ``--checkpoint`` uses an existing bundle (and writes its
``model.net`` if it has none). ``run --random K`` also checks K seeded random networks from
``tests/netgen.py`` (edge decays, thresholds, biases, strides, paddings). Exit status 0 only when
nothing differs; 1 on any mismatch; 2 on bad input or a missing environment.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from hardware import reference  # noqa: E402
from hardware.bundle import Bundle, read_bundle  # noqa: E402
from hardware.targets.loihi.netx import NETX_BIAS_EXP, NETX_NAME, NETX_RESET_OFFSET, NetxError, write_netx  # noqa: E402
from hardware.targets.loihi.profile import LOIHI2  # noqa: E402

SETUP = (
    "create it with: /root/.pyenv/versions/3.10.13/bin/python3.10 -m venv .venv-netx && "
    ".venv-netx/bin/pip install lava-dl==0.6.0 lava-nc==0.10.0 'numpy<2' h5py 'networkx<=2.8.7' 'asteval<0.10'"
)


# --- step 1, main environment ---------------------------------------------------------------------


def prepare(args: argparse.Namespace) -> int:
    from training import data

    if args.checkpoint:  # the same export as `lsg-deploy export --target loihi`
        from lsg_deploy import deploy

        deploy.export(args.checkpoint, "loihi", args.bundle)
    bundle = read_bundle(args.bundle)
    net_path = args.bundle / NETX_NAME
    if not net_path.exists():
        write_netx(bundle, net_path)
    _, test, _ = data.load(data.DataSpec(**bundle.source["data"]), timesteps=bundle.timesteps)
    test = test.head(args.count)
    args.inputs.parent.mkdir(parents=True, exist_ok=True)
    np.savez(args.inputs, pixels=test.pixels, labels=test.labels, input_max=test.input_max)
    print(f"wrote {net_path} and {args.inputs} ({len(test.labels)} test images)")
    return 0


# --- step 2, netx environment ---------------------------------------------------------------------


def run_netx(net_path: Path, bundle: Bundle, pixels: np.ndarray) -> tuple[dict[str, np.ndarray], np.ndarray, float]:
    """Run lava-dl's netx ``Network`` of ``net_path`` on ``pixels`` ((B, C, H, W) direct or (B, T, C, H, W)
    event frames), samples back to back.

    Returns spikes per hidden layer (B, T, neurons in (C, H, W) order), the readout membrane
    (B, T, classes), and the wall time. Layer ``k`` sees input step ``t`` of sample ``i`` at Lava
    step ``i T + t + 2 + k``; ``reset_interval = T, reset_offset = 1`` zeroes it just then.
    """
    import h5py
    from lava.lib.dl import netx
    from lava.magma.core.run_conditions import RunSteps
    from lava.magma.core.run_configs import Loihi2SimCfg
    from lava.proc import io
    from lava.proc.monitor.process import Monitor

    T, (B, L) = bundle.timesteps, (pixels.shape[0], len(bundle.integer_graph.nodes))
    with h5py.File(net_path, "r") as f:
        message_bits = int(f.attrs["input_message_bits"])
    net = netx.hdf5.Network(net_config=str(net_path), input_message_bits=message_bits,
                            reset_interval=T, reset_offset=NETX_RESET_OFFSET)
    if len(net.layers) != L:
        raise RuntimeError(f"netx built {len(net.layers)} layers, the bundle has {L}")
    steps = B * T + L
    per_step = bundle.input.encoding == "event-frames"  # (B, T, C, H, W), else the image every step
    x = pixels if per_step else np.broadcast_to(pixels[:, None], (B, T, *pixels.shape[1:]))
    frames = x.transpose(0, 1, 4, 3, 2) if len(net.inp.shape) == 3 else x.reshape(B, T, -1)  # (W, H, C)
    feed = np.zeros((*net.inp.shape, steps), np.int32)
    for i in range(B):
        for t in range(T):
            feed[..., i * T + t] = frames[i, t]
    source = io.source.RingBuffer(data=feed)
    source.s_out.connect(net.inp)
    monitors = []
    for k, block in enumerate(net.layers):
        m = Monitor()
        m.probe(block.neuron.v if k == L - 1 else block.neuron.s_out, steps)
        monitors.append(m)
    start = time.perf_counter()
    try:
        net.run(condition=RunSteps(num_steps=steps), run_cfg=Loihi2SimCfg(select_tag="fixed_pt"))
        traces = [next(iter(next(iter(m.get_data().values())).values())) for m in monitors]
    finally:
        net.stop()
    seconds = time.perf_counter() - start
    rows = (np.arange(B)[:, None] * T + np.arange(T)[None, :])  # (B, T): Lava step - 2 - k, 0-based
    out = []
    for k, trace in enumerate(traces):
        x = np.asarray(trace)[rows + 1 + k]  # (B, T, *lava_shape), Lava step i T + t + 2 + k is row +1
        if x.ndim == 5:  # (B, T, X, Y, C) -> (C, H, W) order
            x = x.transpose(0, 1, 4, 3, 2)
        out.append(x.reshape(B, T, -1))
    spikes = {node.name: out[k].astype(bool) for k, node in enumerate(bundle.integer_graph.hidden)}
    if any(np.any((o != 0) & (o != 1)) for o in out[:-1]):
        raise RuntimeError("netx emitted non-binary spikes")
    return spikes, np.rint(out[-1]).astype(np.int64), seconds


def compare(bundle: Bundle, pixels: np.ndarray, net_path: Path, label: str) -> int:
    """Print the per-layer comparison of netx and the reference; return the number of mismatches."""
    ref = reference.run(bundle.integer_graph, pixels, bundle.timesteps, LOIHI2)
    spikes, readout, seconds = run_netx(net_path, bundle, pixels)
    B, T = pixels.shape[0], bundle.timesteps
    print(f"{label}: {B} samples x T={T}, {B * T + len(bundle.integer_graph.nodes)} Lava steps, {seconds:.1f} s")
    bad = 0
    for layer in bundle.integer_graph.hidden:
        got, want = spikes[layer.name], ref.spikes[layer.name]
        n = int(np.count_nonzero(got != want))
        bad += n
        print(f"  {layer.name:<10} spikes   {got.size:>9} compared  {int(want.sum()):>8} reference spikes  "
              f"{int(got.sum()):>8} netx spikes  {n} mismatches")
    n = int(np.count_nonzero(readout != ref.readout))
    bad += n
    same_pred = int(np.count_nonzero(readout[:, -1].argmax(1) == ref.predictions()))
    name = bundle.integer_graph.readout.name
    print(f"  {name:<10} membrane {readout.size:>9} compared  {n} mismatches; "
          f"predictions equal {same_pred}/{B}")
    sat = {k: v for k, v in ref.saturation.items() if any(v.values())}
    if sat:
        print(f"  reference saturation counts: {sat}")
    return bad + (B - same_pred)


def check(args: argparse.Namespace) -> int:
    try:
        import lava.lib.dl.netx  # noqa: F401
    except ImportError as exc:
        print(f"netx_check: lava-dl's netx is not importable here ({exc}); {SETUP}", file=sys.stderr)
        return 2
    from importlib.metadata import version

    print(f"lava-dl {version('lava-dl')}, lava-nc {version('lava-nc')}, torch {version('torch')}, "
          f"numpy {np.__version__}; Loihi2SimCfg(select_tag='fixed_pt')")
    bad = 0
    if args.bundle:
        bundle = read_bundle(args.bundle)
        net_path = args.bundle / NETX_NAME
        if not net_path.exists():
            print(f"netx_check: {net_path} not found; run 'prepare' first", file=sys.stderr)
            return 2
        with np.load(args.inputs) as npz:
            pixels, labels = npz["pixels"][: args.count], npz["labels"][: args.count]
        bad += compare(bundle, pixels, net_path, f"bundle {args.bundle}")
        acc = reference.run(bundle.integer_graph, pixels, bundle.timesteps, LOIHI2).predictions() == labels
        print(f"  accuracy on these samples: {acc.mean() * 100:.2f}% (netx == reference)")
    if args.random:
        netgen = _netgen()
        refused = 0
        with tempfile.TemporaryDirectory() as tmp:
            for seed in range(args.random):
                graph = netgen.random_network(seed)
                graph = dataclasses.replace(graph, nodes=tuple(dataclasses.replace(x, bias_exp=NETX_BIAS_EXP)
                                                               for x in graph.nodes))
                bundle = Bundle(target="loihi", timesteps=5, float_graph=netgen.placeholder_float(graph),
                                integer_graph=graph, profile=LOIHI2)
                path = Path(tmp) / f"random{seed}.net"
                try:
                    write_netx(bundle, path)
                except NetxError as exc:
                    refused += 1
                    print(f"random network {seed}: refused by write_netx ({exc})")
                    continue
                bad += compare(bundle, netgen.random_pixels(seed, graph.input.shape, batch=6), path,
                               f"random network {seed} ({' -> '.join(x.geometry.kind for x in graph.edges)})")
        print(f"random networks: {args.random - refused} run, {refused} refused")
    print(f"RESULT: {'PASS' if bad == 0 else 'FAIL'} ({bad} mismatches)")
    return 0 if bad == 0 else 1


def _netgen():
    """``tests/netgen.py`` by path: lava-dl's wheel installs a top-level ``tests`` package of its own."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("lsg_netgen", ROOT / "tests" / "netgen.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="step", required=True)
    pr = sub.add_parser("prepare", help="main environment: bundle + model.net + test pixels")
    pr.add_argument("--bundle", type=Path, required=True)
    pr.add_argument("--checkpoint", type=Path, help="export this model.pt netx-exact into --bundle first")
    pr.add_argument("--inputs", type=Path, required=True)
    pr.add_argument("--count", type=int, help="first N test images (default: all)")
    ru = sub.add_parser("run", help="netx environment: run netx on Lava and compare with the reference")
    ru.add_argument("--bundle", type=Path)
    ru.add_argument("--inputs", type=Path)
    ru.add_argument("--count", type=int)
    ru.add_argument("--random", type=int, default=0, help="also check this many random networks")
    args = parser.parse_args(argv)
    if args.step == "run" and args.bundle and not args.inputs:
        parser.error("run --bundle needs --inputs")
    if args.step == "run" and not args.bundle and not args.random:
        parser.error("run needs --bundle/--inputs or --random")
    return prepare(args) if args.step == "prepare" else check(args)


if __name__ == "__main__":
    raise SystemExit(main())
