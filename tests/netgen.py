"""Seeded random integer networks in the Loihi profile, for cross-implementation tests.

They deliberately visit the edges: extreme and negative weights, thresholds 0 and VTH_MAX,
decays 0 and 4095, biases at the ends of their range, odd shapes, strides and padding.
"""

from __future__ import annotations

import numpy as np

from hardware import fixed_point as fp
from hardware.bundle import Geometry, LoihiLayer


def _pick(rng: np.random.Generator, edges: list[int], lo: int, hi: int) -> int:
    return int(rng.choice(edges)) if rng.random() < 0.4 else int(rng.integers(lo, hi + 1))


def _weights(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    w = fp.WEIGHT_STEP * rng.integers(fp.WEIGHT_MIN // 2, fp.WEIGHT_MAX // 2 + 1, size=shape)
    extremes = rng.random(shape) < 0.05
    w[extremes] = rng.choice([fp.WEIGHT_MIN, fp.WEIGHT_MAX], size=int(extremes.sum()))
    return w.astype(np.int64)


def _neuron(rng: np.random.Generator, readout: bool) -> dict:
    return {
        "bias_exp": _pick(rng, [fp.BIAS_EXP_MIN, fp.BIAS_EXP_MAX], fp.BIAS_EXP_MIN, fp.BIAS_EXP_MAX),
        "du": _pick(rng, [0, fp.DECAY_MAX], 0, fp.DECAY_MAX),
        "dv": 0 if readout else _pick(rng, [0, 1, fp.DECAY_MAX], 0, fp.DECAY_MAX),
        "vth": fp.VTH_MAX if readout else _pick(rng, [0, 1, fp.VTH_MAX], 0, 4000),
    }


def _bias(rng: np.random.Generator, n: int) -> np.ndarray:
    b = rng.integers(-600, 600, size=n)
    b[rng.random(n) < 0.1] = fp.BIAS_MANT_MIN
    b[rng.random(n) < 0.1] = fp.BIAS_MANT_MAX
    return b.astype(np.int64)


def random_network(seed: int, max_hidden: int = 3) -> tuple[tuple[LoihiLayer, ...], tuple[int, int, int]]:
    """A random conv/dense stack ending in a readout, and its input shape (C, H, W)."""
    rng = np.random.default_rng(seed)
    in_shape = (int(rng.integers(1, 4)), int(rng.integers(3, 10)), int(rng.integers(3, 10)))
    shape: tuple[int, ...] = in_shape
    layers = []
    n_hidden = int(rng.integers(1, max_hidden + 1))
    for i in range(n_hidden + 1):
        readout = i == n_hidden
        if len(shape) == 3 and not readout and rng.random() < 0.7:
            k = (int(rng.integers(1, min(4, shape[1]) + 1)), int(rng.integers(1, min(4, shape[2]) + 1)))
            stride = (int(rng.integers(1, 4)), int(rng.integers(1, 4)))
            padding = (int(rng.integers(0, 3)), int(rng.integers(0, 3)))
            out_c = int(rng.integers(1, 5))
            out = (out_c, (shape[1] + 2 * padding[0] - k[0]) // stride[0] + 1,
                   (shape[2] + 2 * padding[1] - k[1]) // stride[1] + 1)
            geometry = Geometry("conv", shape, out, stride, padding)
            weight = _weights(rng, (out_c, shape[0], *k))
        else:
            fan_in, n_out = int(np.prod(shape)), int(rng.integers(1, 13))
            geometry = Geometry("dense", (fan_in,), (n_out,))
            weight = _weights(rng, (n_out, fan_in))
        layers.append(LoihiLayer(
            name=f"l{i}", geometry=geometry, weight=weight, weight_exp=0,
            bias_mant=_bias(rng, geometry.output_shape[0]), scale=1.0, input_scale=1.0, readout=readout,
            **_neuron(rng, readout),
        ))
        shape = geometry.output_shape
    return tuple(layers), in_shape


def random_pixels(seed: int, shape: tuple[int, int, int], batch: int, input_max: int = 16) -> np.ndarray:
    rng = np.random.default_rng(seed + 10_000)
    return rng.integers(0, input_max + 1, size=(batch, *shape)).astype(np.int64)
