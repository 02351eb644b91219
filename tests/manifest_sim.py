"""An FPGA designer's simulator: the exported network from ``manifest.json`` and the ``.mem`` files
alone, written from the manifest's statements (not from ``hardware/``: only numpy here), to check
the tables and the worked example independently of the code that wrote them.

It reads the words as the manifest describes them (hex two's complement at ``bits``), runs every
node per step in the manifest's order with the update the manifest states (``acc``, the decay of
``profile.decay``, ``bias[channel(n)]``, the clamp, the threshold compare, the reset), convolving
by the manifest's formula ``in[c, y*stride_h + i - pad_h, x*stride_w + j - pad_w]`` one kernel tap
at a time over all output positions.

:func:`check_c_program` does the same for ``network.h``: it compiles ``tests/c/network_h_run.c``,
a C program written against the header alone, and compares what it prints with a reference run.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

C_PROGRAM = Path(__file__).parent / "c" / "network_h_run.c"


def read_words(path: Path, bits: int) -> np.ndarray:
    """A ``.mem`` file: a ``//`` comment line, then one hex two's-complement word per line."""
    lines = Path(path).read_text().splitlines()
    assert lines[0].startswith("//") and all(len(w) == (bits + 3) // 4 for w in lines[1:])
    raw = np.array([int(w, 16) for w in lines[1:]], np.int64)
    return np.where(raw >= 1 << (bits - 1), raw - (1 << bits), raw)


@dataclass
class Network:
    manifest: dict
    weights: dict[str, np.ndarray]  #: edge -> (O, C, KH, KW), a dense (N, F) as (N, F, 1, 1)
    biases: dict[str, np.ndarray]

    @classmethod
    def load(cls, directory: Path) -> Network:
        m = json.loads((Path(directory) / "manifest.json").read_text())
        weights = {}
        for e in m["edges"]:
            w = read_words(Path(directory) / e["weight"]["file"], e["weight"]["bits"]).reshape(e["weight"]["shape"])
            weights[e["name"]] = w if w.ndim == 4 else w[:, :, None, None]
        biases = {n["name"]: read_words(Path(directory) / n["bias"]["file"], n["bias"]["bits"]) for n in m["nodes"]}
        return cls(m, weights, biases)

    def decay(self, v: np.ndarray, code: int) -> np.ndarray:
        d = self.manifest["profile"]["decay"]
        if code == d["no_decay_code"]:
            return v
        if d["form"] == "multiply":
            f = d["fraction_bits"]
            assert d["rounding"] == "half-up"
            return (v * code + (1 << (f - 1))) >> f  # numpy >> is arithmetic: floor
        assert d["form"] == "shift" and d["rounding"] == "floor"
        return v - (v >> code)

    def edge_output(self, edge: dict, source: np.ndarray) -> np.ndarray:
        """``out[o, y, x] = sum w[o, c, i, j] * in[c, y*sh + i - ph, x*sw + j - pw]``, flat."""
        w = self.weights[edge["name"]]
        if edge["kind"] == "dense":
            return w[:, :, 0, 0] @ source
        c, h, wd = edge["input_shape"]
        o, oh, ow = edge["output_shape"]
        (sh, sw), (ph, pw) = edge["stride"], edge["padding"]
        x = np.zeros((c, h + 2 * ph + sh * oh, wd + 2 * pw + sw * ow), np.int64)  # room for every tap
        x[:, ph:ph + h, pw:pw + wd] = source.reshape(c, h, wd)
        out = np.zeros((o, oh, ow), np.int64)
        for i in range(w.shape[2]):
            for j in range(w.shape[3]):
                window = x[:, i:i + sh * oh:sh, j:j + sw * ow:sw]  # in[c, y*sh + i - ph, ...] for every (y, x)
                out += np.einsum("oc,chw->ohw", w[:, :, i, j], window)
        return out.reshape(-1)

    def run(self, frames: list[np.ndarray]) -> dict:
        """One sample, ``frames[t]`` the input of step t (flat): per step every node's output
        (hidden: 0/1 spikes, readout: membranes) and membranes, as ``{name: (T, neurons)}``."""
        m = self.manifest
        lim = m["profile"]["membrane"]["max"]
        ge = m["profile"]["threshold"]["compare"] == "spike when v >= vth"
        v = {n["name"]: np.zeros(n["neurons"], np.int64) for n in m["nodes"]}
        out = {n["name"]: [] for n in m["nodes"]}
        membranes = {n["name"]: [] for n in m["nodes"]}
        for frame in frames:
            held = {"input": np.asarray(frame, np.int64)}
            for n in m["nodes"]:
                acc = sum(self.edge_output(e, held[e["source"]]) for e in m["edges"] if e["target"] == n["name"])
                channel = np.arange(n["neurons"]) // (n["neurons"] // n["shape"][0])  # channel(n) = n div (H*W)
                v_sat = np.clip(self.decay(v[n["name"]], n["decay_code"]) + acc + self.biases[n["name"]][channel],
                                -lim, lim)
                spike = (v_sat >= n["vth"] if ge else v_sat > n["vth"]) & (not n["readout"])  # the readout never fires
                v[n["name"]] = np.where(spike, 0, v_sat)
                held[n["name"]] = spike.astype(np.int64)
                out[n["name"]].append(v[n["name"]] if n["readout"] else held[n["name"]])
                membranes[n["name"]].append(v[n["name"]])
        return {"out": {k: np.array(x) for k, x in out.items()},
                "v": {k: np.array(x) for k, x in membranes.items()}}


def example_frames(manifest: dict) -> list[np.ndarray]:
    """The worked example's input, from the rule the manifest states in words."""
    spec, t_steps = manifest["input"], manifest["timesteps"]
    i = np.arange(spec["neurons"], dtype=np.int64)
    if spec["encoding"] == "event-frames":
        assert manifest["worked_example"]["input"].startswith("event-frames: x[t, i] = (i + t) mod 2")
        return [(i + t) % 2 for t in range(t_steps)]
    assert manifest["worked_example"]["input"].startswith(f"direct: x[i] = i mod {spec['max'] + 1} ")
    return [i % (spec["max"] + 1)] * t_steps


def _expected_taps(net: Network, edge: dict, source: np.ndarray, n: int) -> list[dict]:
    w = net.weights[edge["name"]]
    if edge["kind"] == "dense":
        return [{"x_at": [f], "x_index": f, "x": int(source[f]), "w_at": [n, f], "w_address": n * w.shape[1] + f,
                 "w": int(w[n, f, 0, 0])} for f in range(len(source)) if source[f]]
    c_in, h_in, w_in = edge["input_shape"]
    _, oh, ow = edge["output_shape"]
    o, y, x = n // (oh * ow), n // ow % oh, n % ow
    taps = []
    for c in range(c_in):
        for i in range(w.shape[2]):
            for j in range(w.shape[3]):
                h, col = y * edge["stride"][0] + i - edge["padding"][0], x * edge["stride"][1] + j - edge["padding"][1]
                index = (c * h_in + h) * w_in + col
                if 0 <= h < h_in and 0 <= col < w_in and source[index]:
                    taps.append({"x_at": [c, h, col], "x_index": index, "x": int(source[index]), "w_at": [o, c, i, j],
                                 "w_address": ((o * c_in + c) * w.shape[2] + i) * w.shape[3] + j,
                                 "w": int(w[o, c, i, j])})
    return taps


def check_worked_example(directory: Path) -> dict:
    """Recompute every number of ``manifest.json``'s worked example from the tables and the
    stated input; returns the example (an assertion names the first number that differs)."""
    net = Network.load(directory)
    m, ex = net.manifest, net.manifest["worked_example"]
    frames = example_frames(m)
    sim = net.run(frames)
    nodes = {n["name"]: n for n in m["nodes"]}
    lim = m["profile"]["membrane"]["max"]
    ge = m["profile"]["threshold"]["compare"] == "spike when v >= vth"
    assert ex["neurons"][0]["node"] == m["nodes"][0]["name"] and len(ex["neurons"]) == min(2, len(m["nodes"]))
    for neuron in ex["neurons"]:
        node, n = nodes[neuron["node"]], neuron["neuron"]
        hw = node["neurons"] // node["shape"][0]
        assert neuron["channel"] == n // hw and neuron["position"] == list(np.unravel_index(n, node["shape"]))
        assert neuron["bias"] == net.biases[node["name"]][n // hw]
        assert (neuron["decay_code"], neuron["vth"]) == (node["decay_code"], node["vth"])
        assert [s["t"] for s in neuron["steps"]] == list(range(min(2, m["timesteps"])))
        v = 0
        for step in neuron["steps"]:
            t, where = step["t"], f"{node['name']}[{n}] step {step['t']}"
            held = {"input": frames[t], **{k: sim["out"][k][t] for k in sim["out"]}}
            incoming = [e for e in m["edges"] if e["target"] == node["name"]]
            assert [e["edge"] for e in step["edges"]] == [e["name"] for e in incoming], where
            for listed, e in zip(step["edges"], incoming, strict=True):
                assert listed["source"] == e["source"]
                assert listed["taps"] == _expected_taps(net, e, held[e["source"]], n), where
                assert listed["sum"] == sum(tap["x"] * tap["w"] for tap in listed["taps"]), where
            acc = sum(e["sum"] for e in step["edges"])
            assert acc == sum(net.edge_output(e, held[e["source"]])[n] for e in incoming), where
            d = int(net.decay(np.array([v]), node["decay_code"])[0])
            v_raw = d + acc + neuron["bias"]
            v_sat = min(max(v_raw, -lim), lim)
            spike = v_sat >= node["vth"] if ge else v_sat > node["vth"]
            after = 0 if spike else v_sat
            assert (step["v_before"], step["acc"], step["d"], step["v_raw"], step["v_sat"], step["spike"],
                    step["v_after"]) == (v, acc, d, v_raw, v_sat, spike, after), where
            assert after == sim["v"][node["name"]][t][n], where
            v = after
    hidden = [n["name"] for n in m["nodes"] if not n["readout"]]
    assert ex["spike_counts"] == {k: sim["out"][k].sum(axis=1).tolist() for k in hidden}
    readout = sim["out"][m["nodes"][-1]["name"]]
    assert ex["readout"] == readout.tolist()
    last = readout[-1].tolist()
    assert ex["class"] == last.index(max(last))  # the lowest index among the largest
    return ex


def c_compiler() -> str | None:
    return shutil.which("cc") or shutil.which("gcc")


def check_c_program(compiler: str, directory: Path, inputs: np.ndarray, expected: Any) -> None:
    """Compile ``tests/c/network_h_run.c`` against ``directory``'s ``network.h`` (C99, every
    warning an error), run it on each sample of ``inputs`` and assert that it prints the
    ``expected`` run's (``hardware.reference.IntegerRun``) spikes, readout after every step and
    class, with ``==``."""
    nodes = json.loads((Path(directory) / "manifest.json").read_text())["nodes"]
    binary = Path(directory) / "network_h_run"
    subprocess.run([compiler, "-std=c99", "-pedantic", "-Wall", "-Wextra", "-Werror", "-O1", "-I", str(directory),
                    str(C_PROGRAM), "-o", str(binary)], check=True, capture_output=True, text=True)
    for b, x in enumerate(inputs):
        proc = subprocess.run([str(binary)], input=" ".join(map(str, x.ravel().tolist())), capture_output=True,
                              text=True, timeout=60, check=True)
        rows: dict[str, list[list[int]]] = {n["name"]: [] for n in nodes}
        *steps, last = proc.stdout.splitlines()
        for line in steps:
            _, t, name, *values = line.split()
            assert int(t) == len(rows[name])
            rows[name].append([int(v) for v in values])
        for n in nodes:
            want = expected.readout[b] if n["readout"] else expected.spikes[n["name"]][b]
            assert np.array_equal(np.array(rows[n["name"]]), want), (directory.name, b, n["name"])
        final = expected.readout[b, -1]
        assert last == f"class {int(np.flatnonzero(final == final.max())[0])}", (directory.name, b, last)
