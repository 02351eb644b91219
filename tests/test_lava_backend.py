"""Lava (lava-nc 0.10.0, ``Loihi2SimCfg(select_tag='fixed_pt')``) == the integer reference, bit for bit.

Cross-implementation tests (DESIGN section 4): every hidden layer's spikes and the readout
membrane after every step must be equal (``==``, no tolerance) on a trained digits bundle and on
seeded random networks built directly as ``LoihiLayer`` tuples. Lava runs through the subprocess
path (the Lava interpreter, ``make lava-env``); a missing Lava environment fails these tests with
the message saying how to create it, never skips them.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from hardware import fixed_point as fp
from hardware import reference
from hardware.bundle import BundleError, Geometry, LoihiLayer
from hardware.lava_backend import LavaLimitError, check_lava_limits, conv_kernel_to_lava, layouts
from hardware.lava_subprocess import (
    ENV_VAR,
    LavaEnvironmentError,
    LavaJob,
    find_lava_python,
    run_lava_bundle,
    run_lava_jobs,
)

LAVA_TIMEOUT_S = 600
SEEDS = (0, 1, 2, 3)
DIGITS_SAMPLES = 60

# --- seeded random networks ---------------------------------------------------------------------


def _conv_geometry(in_shape, out_c, k, stride, pad) -> Geometry:
    c, h, w = in_shape
    ho = (h + 2 * pad[0] - k[0]) // stride[0] + 1
    wo = (w + 2 * pad[1] - k[1]) // stride[1] + 1
    return Geometry("conv", tuple(in_shape), (out_c, ho, wo), tuple(stride), tuple(pad))


def _weights(rng, shape, sign: str) -> np.ndarray:
    """Even weights in [-256, 254] with both extremes present; optionally of one sign."""
    w = 2 * rng.integers(-128, 128, size=shape)
    flat = w.reshape(-1)
    idx = rng.choice(flat.size, size=min(flat.size, max(2, flat.size // 16)), replace=False)
    flat[idx[0::2]] = fp.WEIGHT_MIN
    flat[idx[1::2]] = fp.WEIGHT_MAX
    if sign == "nonpositive":  # Lava's inferred (inhibitory) sign mode would clip -256 to -255
        w = -np.abs(w)
        w.reshape(-1)[0] = fp.WEIGHT_MIN
    elif sign == "nonnegative":
        w = np.minimum(np.abs(w), fp.WEIGHT_MAX)
    return w.astype(np.int64)


def _pick(rng, choices):
    return choices[int(rng.integers(len(choices)))]


def make_layer(rng, name, kind, in_shape, out, *, k=(3, 3), stride=(1, 1), pad=(0, 0), readout=False,
               sign="mixed", **fixed) -> LoihiLayer:
    """A layer whose parameters are drawn at and inside the edges of their ranges."""
    if kind == "conv":
        g = _conv_geometry(in_shape, out, k, stride, pad)
        wshape = (out, in_shape[0], *k)
    else:
        g = Geometry("dense", tuple(in_shape), (out,))
        wshape = (out, int(np.prod(in_shape)))
    bias = rng.integers(fp.BIAS_MANT_MIN, fp.BIAS_MANT_MAX + 1, size=out)
    bias[rng.integers(out)] = _pick(rng, [fp.BIAS_MANT_MIN, fp.BIAS_MANT_MAX])
    params = dict(
        weight=_weights(rng, wshape, sign),
        weight_exp=0 if kind == "conv" else _pick(rng, [0, 0, -2, 1]),
        bias_mant=bias,
        bias_exp=_pick(rng, [0, 0, 1, 3, fp.BIAS_EXP_MAX]),
        du=_pick(rng, [0, fp.DECAY_MAX, fp.DECAY_MAX, int(rng.integers(1, fp.DECAY_MAX))]),
        dv=_pick(rng, [0, fp.DECAY_MAX, int(rng.integers(1, fp.DECAY_MAX))]),
        vth=_pick(rng, [0, 1, fp.VTH_MAX] + [int(rng.integers(2, 600)) for _ in range(4)]),
    )
    params.update(fixed)
    return LoihiLayer(name=name, geometry=g, scale=1.0, input_scale=1.0, readout=readout, **params)


def random_networks(seed: int) -> list[LavaJob]:
    """Four seeded networks covering the layouts and the arithmetic edges Lava must get right."""
    rng = np.random.default_rng(seed)
    jobs = []
    # conv (non-square kernel, strides, padding) -> conv -> dense -> readout, odd image 5x7
    c1 = make_layer(rng, "c1", "conv", (2, 5, 7), 3, k=(3, 2), stride=(1, 2), pad=(1, 0))
    c2 = make_layer(rng, "c2", "conv", c1.geometry.output_shape, 4, k=(2, 3), stride=(2, 1), pad=(0, 1))
    d1 = make_layer(rng, "d1", "dense", (c2.geometry.neurons,), 13)
    out = make_layer(rng, "out", "dense", (13,), 4, readout=True)
    jobs.append(LavaJob((c1, c2, d1, out), rng.integers(0, 17, size=(5, 2, 5, 7)), 3))
    # graded dense on an image -> dense feeding a conv (reshaped port) -> conv readout
    d1 = make_layer(rng, "d1", "dense", (1, 4, 6), 11)
    d2 = make_layer(rng, "d2", "dense", (11,), 36, sign="nonnegative")
    c1 = make_layer(rng, "c1", "conv", (4, 3, 3), 2, k=(3, 3), pad=(1, 1))
    out = make_layer(rng, "out", "conv", c1.geometry.output_shape, 2, k=(2, 1), readout=True)
    jobs.append(LavaJob((d1, d2, c1, out), rng.integers(0, 256, size=(4, 1, 4, 6)), 4))
    # a single conv layer at T = 1; an all non-positive readout holding -256
    c1 = make_layer(rng, "c1", "conv", (3, 6, 5), 5, k=(3, 3), stride=(2, 2), pad=(2, 1))
    out = make_layer(rng, "out", "dense", (c1.geometry.neurons,), 3, readout=True, sign="nonpositive")
    jobs.append(LavaJob((c1, out), rng.integers(0, 5, size=(6, 3, 6, 5)), 1))
    # huge graded input: conv sums wrap at 24 bits, currents wrap, membranes clip (and spike
    # past the largest threshold)
    c1 = make_layer(rng, "c1", "conv", (1, 6, 6), 2, k=(3, 3), pad=(1, 1), du=fp.DECAY_MAX, vth=fp.VTH_MAX)
    d1 = make_layer(rng, "d1", "dense", (c1.geometry.neurons,), 7)
    out = make_layer(rng, "out", "dense", (7,), 3, readout=True)
    jobs.append(LavaJob((c1, d1, out), rng.integers(0, 1 << 15, size=(4, 1, 6, 6)), 3))
    return jobs


def tie_network() -> LavaJob:
    """Every step: v == vth << 6 exactly (no spike), one above it (spike), one below (none)."""
    hidden = LoihiLayer(
        name="h", geometry=Geometry("dense", (1, 1, 1), (3,)), weight=np.full((3, 1), 2), weight_exp=0,
        bias_mant=np.array([0, 1, -1]), bias_exp=0, du=fp.DECAY_MAX, dv=fp.DECAY_MAX, vth=10,
        scale=1.0, input_scale=1.0,
    )  # a = 2 * 5 = 10, so v = (10 << 6) + bias = 640 + {0, 1, -1}, and D(640, 4095) = 0
    out = LoihiLayer(
        name="out", geometry=Geometry("dense", (3,), (2,)), weight=np.array([[2, 4, 6], [-2, 0, 254]]),
        weight_exp=0, bias_mant=np.zeros(2, np.int64), bias_exp=0, du=fp.DECAY_MAX, dv=0, vth=fp.VTH_MAX,
        scale=1.0, input_scale=1.0, readout=True,
    )
    return LavaJob((hidden, out), np.full((2, 1, 1, 1), 5), 3)


# --- helpers and fixtures ------------------------------------------------------------------------


def assert_same(ref: reference.IntegerRun, lava: reference.IntegerRun, what: str) -> None:
    assert set(lava.spikes) == set(ref.spikes), what
    for name, spikes in ref.spikes.items():
        assert lava.spikes[name].dtype == bool and lava.spikes[name].shape == spikes.shape, (what, name)
        diff = np.argwhere(lava.spikes[name] != spikes)
        assert diff.size == 0, f"{what}: layer {name} spikes differ at (b, t, n) {diff[:5].tolist()}"
    assert lava.readout.dtype == np.int64 and lava.readout.shape == ref.readout.shape, what
    diff = np.argwhere(lava.readout != ref.readout)
    assert diff.size == 0, f"{what}: readout membranes differ at (b, t, n) {diff[:5].tolist()}"


def _lava(call, *args, **kwargs):
    """Run Lava through the subprocess path; a missing environment fails with how to create it."""
    try:
        return call(*args, in_process=False, timeout=LAVA_TIMEOUT_S, **kwargs)
    except LavaEnvironmentError as exc:
        pytest.fail(f"Lava environment unavailable: {exc}", pytrace=False)


@pytest.fixture(scope="module")
def random_runs():
    jobs = [job for seed in SEEDS for job in random_networks(seed)] + [tie_network()]
    lava = _lava(run_lava_jobs, jobs)
    refs = [reference.run(job.layers, job.pixels, job.timesteps) for job in jobs]
    return jobs, refs, [run for run, _ in lava]


@pytest.fixture(scope="module")
def digits_bundle(tmp_path_factory):
    """A small trained and exported digits bundle (a few seconds of CPU)."""
    from lsg_deploy import pipeline

    root = tmp_path_factory.mktemp("lava-digits")
    pipeline.train({"epochs": 6, "channels": (8, 16), "hidden": 48, "seed": 0}, None, root / "run", quiet=True)
    pipeline.export(root / "run" / "model.pt", "loihi", root / "bundle")
    return root / "bundle"


# --- tests ---------------------------------------------------------------------------------------


def test_random_networks_match_bit_for_bit(random_runs):
    jobs, refs, lavas = random_runs
    assert len(lavas) == len(jobs) == 4 * len(SEEDS) + 1
    for i, (job, ref, lava) in enumerate(zip(jobs, refs, lavas, strict=True)):
        kinds = "-".join(layer.geometry.kind for layer in job.layers)
        assert_same(ref, lava, f"network {i} ({kinds}, T={job.timesteps})")


def test_random_networks_reach_the_edges(random_runs):
    """The generator must keep exercising what could differ: else the equality proves little."""
    jobs, refs, _ = random_runs
    layers = [layer for job in jobs for layer in job.layers]
    totals = {kind: sum(sat[kind] for ref in refs for sat in ref.saturation.values())
              for kind in reference.SATURATION_KINDS}
    assert all(totals[kind] > 0 for kind in reference.SATURATION_KINDS), totals
    for field, edges in (("vth", (0, fp.VTH_MAX)), ("dv", (0, fp.DECAY_MAX)), ("du", (0, fp.DECAY_MAX)),
                         ("bias_exp", (0, fp.BIAS_EXP_MAX))):
        seen = {int(getattr(layer, field)) for layer in layers}
        assert set(edges) <= seen, (field, seen)
    assert any(layer.geometry.kind == "dense" and layer.weight.max() <= 0 and layer.weight.min() == fp.WEIGHT_MIN
               for layer in layers)
    assert {fp.BIAS_MANT_MIN, fp.BIAS_MANT_MAX} <= {int(v) for layer in layers for v in layer.bias_mant}
    assert {-2, 0, 1} <= {layer.weight_exp for layer in layers}
    rates = [ref.spikes[name].mean() for ref in refs for name in ref.spikes]
    assert sum(0.05 < r < 0.95 for r in rates) >= len(rates) // 2, rates


def test_tie_at_threshold_does_not_spike(random_runs):
    jobs, refs, lavas = random_runs
    expected = np.broadcast_to(np.array([False, True, False]), refs[-1].spikes["h"].shape)
    assert np.array_equal(refs[-1].spikes["h"], expected)
    assert np.array_equal(lavas[-1].spikes["h"], expected)


def test_digits_bundle_matches_bit_for_bit(digits_bundle):
    from hardware.bundle import read_bundle
    from lsg_deploy.data import DataSpec, load

    bundle = read_bundle(digits_bundle)
    _, test, _ = load(DataSpec(**bundle.source["data"]))
    pixels = test.pixels[:DIGITS_SAMPLES]
    timing: dict[str, float] = {}
    lava = _lava(run_lava_bundle, digits_bundle, pixels, timing=timing)
    ref = reference.run(bundle.loihi_layers, pixels, bundle.timesteps)
    assert_same(ref, lava, f"digits bundle, {DIGITS_SAMPLES} test images")
    assert timing["steps"] == DIGITS_SAMPLES * bundle.timesteps + len(bundle.loihi_layers)
    assert all(0.01 < ref.spikes[name].mean() < 0.9 for name in ref.spikes), "hidden layers must be active"
    assert np.mean(lava.final_readout.argmax(axis=1) == test.labels[:DIGITS_SAMPLES]) > 0.5


# --- no Lava needed -----------------------------------------------------------------------------


def test_missing_lava_environment_says_how_to_create_it(monkeypatch, tmp_path):
    monkeypatch.setenv(ENV_VAR, str(tmp_path / "no-such-python"))
    with pytest.raises(LavaEnvironmentError, match="make lava-env"):
        find_lava_python()
    job = tie_network()
    with pytest.raises(LavaEnvironmentError, match="make lava-env"):
        run_lava_jobs([job], in_process=False)


def test_limits_refuse_what_lava_cannot_run_exactly():
    rng = np.random.default_rng(0)
    conv = make_layer(rng, "c", "conv", (1, 4, 4), 2, du=fp.DECAY_MAX)
    out = make_layer(rng, "out", "dense", (conv.geometry.neurons,), 2, readout=True, weight_exp=0)
    check_lava_limits((conv, out), 16, 4)
    with pytest.raises(BundleError, match="no weight exponent"):  # the bundle itself refuses it
        dataclasses.replace(conv, weight_exp=1)
    wide = make_layer(rng, "d", "dense", (1, 4, 4), 2, weight_exp=7, du=0)
    with pytest.raises(LavaLimitError, match="int32 LIF"):
        check_lava_limits((wide, out), 1 << 12, 4)
    with pytest.raises(LavaLimitError, match="conv sums .* reach 2\\^31"):
        check_lava_limits((conv, out), 1 << 30, 4)
    shifted_down = make_layer(rng, "d", "dense", (1, 4, 4), 2, weight_exp=-8, du=fp.DECAY_MAX)
    with pytest.raises(LavaLimitError, match="dense sums .* reach 2\\^31"):  # summed before the shift
        check_lava_limits((shifted_down, out), 1 << 22, 4)
    with pytest.raises(LavaLimitError, match="int32 source"):
        check_lava_limits((conv, out), 1 << 31, 4)


def test_layouts_map_lava_neurons_back_to_bundle_order():
    rng = np.random.default_rng(1)
    d = make_layer(rng, "d", "dense", (5,), 24)
    c = make_layer(rng, "c", "conv", (2, 3, 4), 3, k=(2, 2))
    out = make_layer(rng, "out", "dense", (c.geometry.neurons,), 2, readout=True)
    lay = layouts((d, c, out))
    assert lay[0].shape == (24,) and lay[1].shape == (3, 2, 3)  # conv neurons as (W, H, C)
    chw = np.arange(24).reshape(2, 3, 4)
    assert np.array_equal(lay[0].order, chw.transpose(2, 1, 0).ravel())  # dense feeding a conv
    assert np.array_equal(np.sort(lay[1].order), np.arange(c.geometry.neurons))
    assert np.array_equal(lay[2].order, np.arange(2))
    k = np.arange(2 * 3 * 2 * 3).reshape(2, 3, 2, 3)  # (O, C, kh, kw)
    lava_k = conv_kernel_to_lava(k)
    assert lava_k.shape == (2, 3, 2, 3)  # (O, kx=kw, ky=kh, C)
    assert lava_k[1, 0, 0, 2] == k[1, 2, 1, 2]  # flipped: Lava convolves, the bundle correlates
