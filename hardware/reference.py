"""Integer LIF reference for the Loihi profile: numpy only, vectorised over a batch of samples.

It runs a bundle's ``loihi`` layers exactly as Lava's bit-accurate CPU models would, one time
step at a time and every layer within the step (no synaptic delay: the Lava backend aligns
its per-layer delay to this schedule). The neuron arithmetic is the profile's one integer step
(:meth:`hardware.profile.Profile.lif_step`, shared with the torch fake-quant path); per layer
and step, for the Loihi profile::

    a = (W s) << weight_exp          dense (a negative weight_exp shifts right, toward -inf)
    a = wrap24(W * s)                conv: Lava's fixed-point Conv ignores weight_exp
    u = wrap_current(D(u, du + 1) + (a << 6))
    v = clip(D(v, dv) + u + (bias_mant << bias_exp))
    s = v > (vth << 6);  v[s] = 0

Sums are exact int64 here; Lava holds them in int32, so ``hardware.lava_backend`` refuses
networks whose worst case could overflow int32 (``check_lava_limits``).

Saturation is counted, never hidden: conv outputs that wrapped, currents that wrapped,
membranes that hit the clip, and readout neurons that crossed their (maximal) threshold.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from hardware import fixed_point as fp
from hardware.bundle import LoihiLayer
from hardware.profile import LOIHI2, Profile

SATURATION_KINDS = ("a_wrap", "u_wrap", "v_clip", "readout_spike")


@dataclass
class IntegerRun:
    """Result of a run: spikes per hidden layer, readout membranes, saturation counts."""

    spikes: dict[str, np.ndarray]  #: layer -> (B, T, neurons) bool
    readout: np.ndarray  #: (B, T, classes) int64: readout membrane after every step
    saturation: dict[str, dict[str, int]] = field(default_factory=dict)

    @property
    def final_readout(self) -> np.ndarray:
        return self.readout[:, -1]

    def predictions(self) -> np.ndarray:
        return self.final_readout.argmax(axis=1)


def conv2d_int(x: np.ndarray, weight: np.ndarray, stride: tuple[int, int], padding: tuple[int, int]) -> np.ndarray:
    """Exact integer 2-D cross-correlation, (B, C, H, W) x (O, C, kh, kw) -> (B, O, Ho, Wo).

    Computed through float64 BLAS: every partial sum is an integer far below 2^53, so exact.
    """
    ph, pw = padding
    xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw))).astype(np.float64)
    kh, kw = weight.shape[2:]
    win = sliding_window_view(xp, (kh, kw), axis=(2, 3))[:, :, :: stride[0], :: stride[1]]
    out = np.tensordot(win, weight.astype(np.float64), axes=([1, 4, 5], [1, 2, 3]))  # (B, Ho, Wo, O)
    return np.rint(out.transpose(0, 3, 1, 2)).astype(np.int64)


def synaptic_input(layer: LoihiLayer, s: np.ndarray, profile: Profile = LOIHI2) -> tuple[np.ndarray, int]:
    """Activation ``a`` (B, neurons) of one layer for inputs ``s``, and how many values wrapped."""
    g = layer.geometry
    b = s.shape[0]
    if g.kind == "conv":
        raw = conv2d_int(s.reshape(b, *g.input_shape), layer.weight, g.stride, g.padding).reshape(b, -1)
        a = profile.synapse(raw)
        return a, int(np.count_nonzero(a != raw))
    acc = np.rint(s.reshape(b, -1).astype(np.float64) @ layer.weight.T.astype(np.float64)).astype(np.int64)
    exp = int(layer.weight_exp)
    return (np.left_shift(acc, exp) if exp > 0 else np.right_shift(acc, -exp)), 0


def run(layers: tuple[LoihiLayer, ...], pixels: np.ndarray, timesteps: int, profile: Profile = LOIHI2) -> IntegerRun:
    """Run the integer network on encoded inputs (B, C, H, W), the same input every step; the
    neuron arithmetic is ``profile``'s one integer step."""
    pixels = np.asarray(pixels)
    if not np.issubdtype(pixels.dtype, np.integer):
        raise ValueError(f"encoded inputs must be integers, got dtype {pixels.dtype}")
    b = pixels.shape[0]
    state = {layer.name: (np.zeros((b, layer.geometry.neurons), np.int64),) * 2 for layer in layers}
    spikes = {layer.name: np.zeros((b, timesteps, layer.geometry.neurons), bool) for layer in layers[:-1]}
    readout = np.zeros((b, timesteps, layers[-1].geometry.neurons), np.int64)
    saturation = {layer.name: dict.fromkeys(SATURATION_KINDS, 0) for layer in layers}
    x = pixels.astype(np.int64).reshape(b, -1)
    biases = {layer.name: fp.effective_bias(layer.geometry.per_neuron(layer.bias_mant), layer.bias_exp)
              for layer in layers}
    for t in range(timesteps):
        s = x
        for layer in layers:
            a, a_wrapped = synaptic_input(layer, s, profile)
            u, v = state[layer.name]
            fired, u, v, counts = profile.lif_step(a, u, v, layer.du, layer.dv, biases[layer.name], layer.vth)
            state[layer.name] = (u, v)
            sat = saturation[layer.name]
            sat["a_wrap"] += a_wrapped
            sat["u_wrap"] += counts["u_wrap"]
            sat["v_clip"] += counts["v_clip"]
            if layer.readout:
                sat["readout_spike"] += int(np.count_nonzero(fired))
                readout[:, t] = v
            else:
                spikes[layer.name][:, t] = fired
                s = fired.astype(np.int64)
    return IntegerRun(spikes=spikes, readout=readout, saturation=saturation)
