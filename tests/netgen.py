"""Seeded random integer graphs in any profile, for cross-implementation tests.

:func:`random_graph` draws a graph within one profile's ranges (:data:`PROFILES`: every profile
of every target; :func:`profile_of` rotates them over seeds). In LOIHI2 its draws are exactly
those of the Loihi-only generator it grew from, so a seed keeps its graph; in any other profile
nodes and weights come from :func:`profile_node` and :func:`fpga_weights`, over that profile's
ranges. They deliberately visit the edges: extreme and negative weights, thresholds 0 and VTH_MAX,
decays 0 and 4095, biases at the ends of their range, bias exponents 0..7, odd shapes, strides
and padding; and the graph cases: residual adds with identity (``2 k I`` 1x1 conv) and conv
shortcuts, skips over several nodes, several edges into the readout, dense nodes feeding convs,
edges from the input into deeper nodes, and event-frame (0/1 per step) as well as direct inputs.

:func:`tests.netgen_chains.random_fpga_chain` draws chains in the FPGA profiles (what the RTL
runs) from :func:`profile_node` and :func:`fpga_weights` too.

Names are the same scheme for every seed: hidden nodes ``n1, n2, ...`` in topological order, the
readout ``out``, an edge ``<source>-<target>``; :func:`random_network` keeps the chain names
``l0, l1, ...`` (node and edge alike). Only numpy and ``hardware`` are imported (the netx
environment loads this file by path).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from hardware import fixed_point as fp
from hardware.graph import INPUT, FloatEdge, FloatNode, Geometry, Graph, Input, IntegerEdge, IntegerNode
from hardware.profile import Profile
from hardware.targets import TARGETS, target_of
from hardware.targets.loihi.profile import LOIHI2

#: every profile of every registered target: what the random-graph tests run in
PROFILES: tuple[Profile, ...] = tuple(p for t in TARGETS.values() for p in t.profiles)
#: the longest run the tests give a random graph: its readout is accepted by its target for so many steps
MAX_TIMESTEPS = 4


def profile_of(seed: int) -> Profile:
    """The profile a rotated random-graph test draws seed ``seed`` in: the seeds take the
    profiles in turn, so N seeds give each of the P profiles N / P graphs (the run time of N)."""
    return PROFILES[seed % len(PROFILES)]


def rotation(seeds: range) -> list[tuple[int, Profile]]:
    """``(seed, profile_of(seed))`` for each seed: a rotated test's parameters."""
    return [(seed, profile_of(seed)) for seed in seeds]


def rotation_id(value: object) -> str | None:
    """pytest ids for :func:`rotation`'s pairs: a profile by its name (the seed as pytest writes it)."""
    return value.name if isinstance(value, Profile) else None


IDENTITY_GAINS = (1, 2, 32, 127)  #: an identity shortcut's weight is 2 k I for one of these k


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


def conv_out(shape: tuple[int, ...], out_c: int, k: tuple[int, int], stride: tuple[int, int],
             padding: tuple[int, int]) -> tuple[int, int, int]:
    """Output shape (C, H, W) of a conv on ``shape``."""
    return (out_c, *((n + 2 * p - kk) // s + 1 for n, p, kk, s in zip(shape[1:], padding, k, stride, strict=True)))


def loihi_node(rng: np.random.Generator, name: str, shape: tuple[int, ...], readout: bool = False,
               **fixed) -> IntegerNode:
    """A node whose parameters are drawn at and inside the edges of their ranges (``fixed`` overrides)."""
    params = {"bias_mant": _bias(rng, shape[0]), **_neuron(rng, readout), **fixed}
    return IntegerNode(name=name, shape=tuple(shape), scale=1.0, readout=readout, **params)


def conv_edge(rng: np.random.Generator, source: str, target: str, in_shape: tuple[int, ...], out_c: int,
              k: tuple[int, int] = (3, 3), stride: tuple[int, int] = (1, 1), padding: tuple[int, int] = (0, 0),
              weight: np.ndarray | None = None) -> IntegerEdge:
    """A conv edge (random weights unless given) named ``<source>-<target>``."""
    out = conv_out(in_shape, out_c, k, stride, padding)
    w = _weights(rng, (out_c, in_shape[0], *k)) if weight is None else np.asarray(weight, np.int64)
    return IntegerEdge(name=f"{source}-{target}", source=source, target=target,
                     geometry=Geometry("conv", tuple(in_shape), out, tuple(stride), tuple(padding)),
                     weight=w, weight_exp=0, input_scale=1.0)


def dense_edge(rng: np.random.Generator, source: str, target: str, fan_in: int, n_out: int,
               weight_exp: int = 0, weight: np.ndarray | None = None) -> IntegerEdge:
    """A dense edge (random Loihi weights unless given) named ``<source>-<target>``."""
    w = _weights(rng, (n_out, fan_in)) if weight is None else np.asarray(weight, np.int64)
    return IntegerEdge(name=f"{source}-{target}", source=source, target=target,
                     geometry=Geometry("dense", (fan_in,), (n_out,)), weight=w, weight_exp=weight_exp,
                     input_scale=1.0)


def identity_shortcut(source: str, target: str, shape: tuple[int, ...], gain: int) -> IntegerEdge:
    """1x1 conv whose weights are ``2 gain I``: adds ``2 gain`` times the source's spikes."""
    c = shape[0]
    weight = (2 * gain * np.eye(c, dtype=np.int64))[:, :, None, None]
    return IntegerEdge(name=f"{source}-{target}", source=source, target=target,
                     geometry=Geometry("conv", tuple(shape), tuple(shape)), weight=weight, weight_exp=0,
                     input_scale=1.0)


def conv_solutions(src: tuple[int, ...], dst_hw: tuple[int, int]) -> list[tuple]:
    """Every ``(k, stride, padding)`` (per axis, k <= 3, stride <= 2, padding <= k // 2) mapping
    the source's (H, W) onto ``dst_hw``."""
    per_axis = []
    for n, m in zip(src[1:], dst_hw, strict=True):
        per_axis.append([(k, s, p) for k in (1, 2, 3) for s in (1, 2) for p in range(k // 2 + 1)
                         if k <= n + 2 * p and (n + 2 * p - k) // s + 1 == m])
    return [((a[0], b[0]), (a[1], b[1]), (a[2], b[2])) for a in per_axis[0] for b in per_axis[1]]


# --- graphs --------------------------------------------------------------------------------------

class _Builder:
    """Accumulates nodes and edges; hidden nodes are named n1, n2, ... in creation order.

    Values are drawn within ``profile``'s ranges: in LOIHI2 by :func:`loihi_node` and ``_weights``
    (the Loihi-only generator's stream, unchanged), in any other profile by :func:`profile_node`
    and :func:`fpga_weights`, a third of the graphs in the regime of membranes of a few units."""

    def __init__(self, rng: np.random.Generator, spec: Input, profile: Profile):
        self.rng, self.spec, self.profile = rng, spec, profile
        self.loihi = profile == LOIHI2
        self.small = not self.loihi and bool(rng.random() < 0.35)
        self.nodes: list[IntegerNode] = []
        self.edges: list[IntegerEdge] = []
        self.shapes: dict[str, tuple[int, ...]] = {INPUT: tuple(spec.shape)}
        self.views: dict[str, tuple[int, int, int]] = {}  # 1-D node -> the (C, H, W) convs read it as
        if len(spec.shape) == 3:
            self.views[INPUT] = tuple(spec.shape)

    def node(self, shape: tuple[int, ...], readout: bool = False) -> str:
        name = "out" if readout else f"n{len(self.nodes) + 1}"
        if self.loihi:
            self.nodes.append(loihi_node(self.rng, name, shape, readout))
        else:
            self.nodes.append(profile_node(self.rng, self.profile, name, tuple(shape), readout, self.small))
        self.shapes[name] = tuple(shape)
        return name

    def weights(self, shape: tuple[int, ...]) -> np.ndarray:
        if self.loihi:
            return _weights(self.rng, shape)
        p = self.profile
        return fpga_weights(self.rng, shape, self.small, p.weight_min, p.weight_max, p.weight_step)

    def dense_exp(self) -> int:
        if self.loihi:
            return int(self.rng.choice([0, 0, 0, -2, 1]))
        top = self.profile.weight_exp_max
        return int(self.rng.choice([0, 0, 0, -min(top, 2), 1])) if top else 0

    def identity_gain(self) -> int:
        """``k`` of an identity shortcut's ``2 k I``, within the profile's weights."""
        if self.loihi:
            return int(self.rng.choice(IDENTITY_GAINS))
        step = self.profile.weight_step
        top = self.profile.weight_max // (2 * step) * step
        return int(self.rng.choice([g for g in (step, top // 2 // step * step, top) if g >= 1]))

    def dense_edge(self, source: str, target: str, fan_in: int, n_out: int) -> IntegerEdge:
        exp = self.dense_exp()
        return dense_edge(self.rng, source, target, fan_in, n_out, exp, self.weights((n_out, fan_in)))

    def conv_edge(self, source: str, target: str, view: tuple[int, int, int], out_c: int, k, stride,
                  padding) -> IntegerEdge:
        return conv_edge(self.rng, source, target, view, out_c, k, stride, padding, self.weights((out_c, view[0], *k)))

    def conv(self, source: str, out_c: int, k, stride, padding) -> str:
        view = self.views.get(source, self.shapes[source])
        target = self.node(conv_out(view, out_c, k, stride, padding))
        self.edges.append(self.conv_edge(source, target, view, out_c, k, stride, padding))
        return target

    def dense(self, source: str, n_out: int, view: tuple[int, int, int] | None = None) -> str:
        target = self.node((n_out,))
        self.edges.append(self.dense_edge(source, target, int(np.prod(self.shapes[source])), n_out))
        if view is not None:
            self.views[target] = view
        return target

    def shortcut(self, source: str, target: str, identity_ok: bool) -> bool:
        """Add an edge ``source -> target`` that fits both shapes (identity if allowed and it fits)."""
        rng, src, dst = self.rng, self.shapes[source], self.shapes[target]
        if len(dst) == 1:
            self.edges.append(self.dense_edge(source, target, int(np.prod(src)), dst[0]))
            return True
        view = self.views.get(source, src if len(src) == 3 else None)
        if view is None:
            return False
        if identity_ok and view == dst and source != INPUT and rng.random() < 0.5:
            self.edges.append(identity_shortcut(source, target, dst, self.identity_gain()))
            return True
        options = conv_solutions(view, dst[1:])
        if not options:
            return False
        k, stride, padding = options[int(rng.integers(len(options)))]
        self.edges.append(self.conv_edge(source, target, view, dst[0], k, stride, padding))
        return True

    def is_3d(self, name: str) -> bool:
        return name in self.views or len(self.shapes[name]) == 3


def _channels(rng: np.random.Generator) -> int:
    return int(rng.integers(1, 5))


def _random_conv(b: _Builder, source: str) -> str:
    """A conv of random kernel, stride and padding per axis (non-square), keeping the map >= 2
    wide where it is."""
    rng = b.rng
    view = b.views.get(source, b.shapes[source])
    axes = []
    for n in view[1:]:
        options = [(k, s, p) for k in (1, 2, 3) for s in (1, 2) for p in range(2)
                   if n + 2 * p >= k and (n + 2 * p - k) // s + 1 >= min(n, 2)]
        axes.append(options[int(rng.integers(len(options)))])
    (kh, sh, ph), (kw, sw, pw) = axes
    return b.conv(source, _channels(rng), (kh, kw), (sh, sw), (ph, pw))


def _residual(b: _Builder, x: str) -> str:
    """x -> a (conv) -> y (conv) plus the shortcut x -> y: identity or a conv of another kernel."""
    rng = b.rng
    c, h, w = b.views.get(x, b.shapes[x])
    stride = 2 if min(h, w) >= 4 and rng.random() < 0.3 else 1
    a = b.conv(x, _channels(rng), (3, 3), (stride, stride), (1, 1))
    k = int(rng.choice([1, 3]))
    y = b.conv(a, c if stride == 1 and rng.random() < 0.6 else _channels(rng), (k, k), (1, 1), (k // 2, k // 2))
    b.shortcut(x, y, identity_ok=True)
    return y


def _skip(b: _Builder, x: str) -> str:
    """x -> p -> q -> y with the shortcut x -> y over two nodes (a delay pad of 2)."""
    rng = b.rng
    if b.is_3d(x):
        p = b.conv(x, _channels(rng), (3, 3), (1, 1), (1, 1))
        q = b.conv(p, _channels(rng), (1, 1), (1, 1), (0, 0))
        y = b.conv(q, _channels(rng), (3, 3), (1, 1), (1, 1))
    else:
        p = b.dense(x, int(rng.integers(2, 10)))
        q = b.dense(p, int(rng.integers(2, 10)))
        y = b.dense(q, int(rng.integers(2, 10)))
    b.shortcut(x, y, identity_ok=True)
    return y


def _dense_to_conv(b: _Builder, x: str) -> str:
    """A dense node laid out for the conv that reads it: x -> d (dense, viewed as C, H, W) -> conv."""
    rng = b.rng
    view = (int(rng.integers(1, 3)), int(rng.integers(2, 5)), int(rng.integers(2, 5)))
    d = b.dense(x, int(np.prod(view)), view=view)
    k = int(rng.integers(1, 3))
    return b.conv(d, _channels(rng), (k, k), (1, 1), (int(rng.integers(0, k)),) * 2)


BLOCKS = ("conv", "residual", "skip", "dense-conv", "dense")


def random_graph(seed: int, profile: Profile) -> Graph:
    """A random DAG in ``profile``: 1-3 blocks (conv, residual, skip, dense -> conv, dense),
    optional edges from the input and from early nodes into deeper ones, and a readout fed by
    one to three edges."""
    rng = np.random.default_rng(seed)
    event = rng.random() < 0.4
    shape = (int(rng.integers(1, 4)), int(rng.integers(4, 9)), int(rng.integers(4, 9)))
    spec = Input(shape, "event-frames" if event else "direct", 1 if event else int(rng.choice([1, 15, 255])))
    b = _Builder(rng, spec, profile)
    last = INPUT
    for _ in range(int(rng.integers(1, 4))):
        block = BLOCKS[int(rng.integers(len(BLOCKS)))]
        if block in ("conv", "residual") and not b.is_3d(last):  # a 1-D node: lay out one for a conv
            last = _dense_to_conv(b, last)
        elif block == "conv":
            last = _random_conv(b, last)
        elif block == "residual":
            last = _residual(b, last)
        elif block == "skip":
            last = _skip(b, last)
        elif block == "dense-conv":
            last = _dense_to_conv(b, last)
        else:
            last = b.dense(last, int(rng.integers(2, 13)))
    # a long edge from the input (its RingBuffer is shifted on Lava) or from an earlier node
    if len(b.nodes) >= 2 and rng.random() < 0.6:
        i = int(rng.integers(1, len(b.nodes)))
        target = b.nodes[i].name
        sources = [INPUT] + [n.name for n in b.nodes[:i]]
        source = sources[int(rng.integers(len(sources)))]
        if not any(e.source == source and e.target == target for e in b.edges):
            b.shortcut(source, target, identity_ok=False)
    out = b.node((int(rng.integers(2, 6)),), readout=True)
    b.edges.append(b.dense_edge(last, out, int(np.prod(b.shapes[last])), b.shapes[out][0]))
    candidates = [INPUT] + [n.name for n in b.nodes[:-1] if n.name != last]
    for source in rng.permutation(candidates)[: int(rng.integers(0, 3))]:
        b.shortcut(str(source), out, identity_ok=False)
    nodes = tuple(b.nodes)
    if profile.current_stage:
        # 255-pixel sums into a remembering current can overflow Lava's int32 LIF (which
        # lava_backend.check_lava_limits refuses): nodes reading such pixels forget their current
        fed = {e.target for e in b.edges if e.source == INPUT} if spec.input_max > 15 else set()
        nodes = tuple(dataclasses.replace(n, du=profile.decay_max) if n.name in fed else n for n in nodes)
    graph = accepted(Graph(spec, nodes, tuple(b.edges)), profile)
    profile.check(graph)  # every value in range, and a checked accumulator holds every sum
    return graph


def accepted(graph: Graph, profile: Profile) -> Graph:
    """``graph`` with its readout quieted until its target accepts it for :data:`MAX_TIMESTEPS`
    steps (Loihi: a readout that cannot pass Lava's threshold, ``loihi.readout_refuses``): the
    current forgets (as the export writes it) and the readout's weights and biases halve."""
    target = target_of(profile)
    if target is None or target.refuses(graph, MAX_TIMESTEPS) is None:
        return graph
    out = graph.readout.name
    nodes = tuple(dataclasses.replace(n, du=profile.decay_max) if n.readout else n for n in graph.nodes)
    edges = graph.edges
    step = profile.weight_step
    while target.refuses(graph := Graph(graph.input, nodes, edges), MAX_TIMESTEPS) is not None:
        edges = tuple(dataclasses.replace(e, weight=np.trunc(e.weight / (2 * step)).astype(np.int64) * step)
                      if e.target == out else e for e in edges)
        nodes = tuple(dataclasses.replace(n, bias_mant=np.trunc(n.bias_mant / 2).astype(np.int64)) if n.readout
                      else n for n in nodes)
    return graph


def random_inputs(seed: int, graph: Graph, timesteps: int, batch: int) -> np.ndarray:
    """Encoded inputs for ``graph``: pixels in ``[0, input_max]`` (direct, ``(B, C, H, W)``) or 0/1
    frames of a random density (event frames, ``(B, T, C, H, W)``)."""
    rng = np.random.default_rng(seed + 10_000)
    spec = graph.input
    if spec.encoding == "event-frames":
        density = rng.uniform(0.1, 0.5)
        return (rng.random((batch, timesteps, *spec.shape)) < density).astype(np.int64)
    return rng.integers(0, spec.input_max + 1, size=(batch, *spec.shape)).astype(np.int64)


# --- chains ----------------------------------------------------------------------------------------

def random_network(seed: int, max_hidden: int = 3) -> Graph:
    """A random conv/dense chain ending in a readout (direct input up to 16): the networks of
    the chain era, drawn exactly as they were; nodes and edges named ``l0, l1, ...``."""
    rng = np.random.default_rng(seed)
    in_shape = (int(rng.integers(1, 4)), int(rng.integers(3, 10)), int(rng.integers(3, 10)))
    shape: tuple[int, ...] = in_shape
    nodes, edges, source = [], [], INPUT
    n_hidden = int(rng.integers(1, max_hidden + 1))
    for i in range(n_hidden + 1):
        readout = i == n_hidden
        if len(shape) == 3 and not readout and rng.random() < 0.7:
            k = (int(rng.integers(1, min(4, shape[1]) + 1)), int(rng.integers(1, min(4, shape[2]) + 1)))
            stride = (int(rng.integers(1, 4)), int(rng.integers(1, 4)))
            padding = (int(rng.integers(0, 3)), int(rng.integers(0, 3)))
            out_c = int(rng.integers(1, 5))
            geometry = Geometry("conv", shape, conv_out(shape, out_c, k, stride, padding), stride, padding)
            weight = _weights(rng, (out_c, shape[0], *k))
        else:
            fan_in, n_out = int(np.prod(shape)), int(rng.integers(1, 13))
            geometry = Geometry("dense", (fan_in,), (n_out,))
            weight = _weights(rng, (n_out, fan_in))
        name = f"l{i}"
        edges.append(IntegerEdge(name=name, source=source, target=name, geometry=geometry, weight=weight,
                               weight_exp=0, input_scale=1.0))
        nodes.append(IntegerNode(name=name, shape=geometry.output_shape, bias_mant=_bias(rng, geometry.output_shape[0]),
                               scale=1.0, readout=readout, **_neuron(rng, readout)))
        shape, source = geometry.output_shape, name
    # the readout quieted until Loihi accepts it (netx and Lava fire a readout that passes its threshold)
    return accepted(Graph(Input(in_shape, "direct", 16), tuple(nodes), tuple(edges)), LOIHI2)


def random_pixels(seed: int, shape: tuple[int, ...], batch: int, input_max: int = 16) -> np.ndarray:
    rng = np.random.default_rng(seed + 10_000)
    return rng.integers(0, input_max + 1, size=(batch, *shape)).astype(np.int64)


def placeholder_float(graph: Graph) -> Graph:
    """A float record for an integer graph (weights as floats, zero biases, beta = v_th = 0.5), so
    that it can be wrapped in a :class:`hardware.bundle.Bundle`."""
    nodes = tuple(FloatNode(n.name, n.shape, np.zeros(n.shape[0]), 0.5, 0.5, n.readout) for n in graph.nodes)
    edges = tuple(FloatEdge(e.name, e.source, e.target, e.geometry, e.weight.astype(np.float64))
                  for e in graph.edges)
    return Graph(graph.input, nodes, edges)


# --- FPGA profiles ---------------------------------------------------------------------------------

FPGA_LIMIT = (1 << 15) - 1  #: the FPGA profiles' membrane, bias and threshold limit



def _fpga_decay_code(rng: np.random.Generator, profile: Profile) -> int:
    top = profile.decay_max
    edges = [0, 1, top - 1, top, profile.decay_none]
    return int(rng.choice(edges)) if rng.random() < 0.6 else int(rng.integers(0, top + 1))


def fpga_weights(rng: np.random.Generator, shape: tuple[int, ...], small: bool = False, lo: int = -128,
                 hi: int = 127, step: int = 1) -> np.ndarray:
    """Weights in ``[lo, hi]`` (a profile's range, multiples of ``step``), a tenth of them at the
    two ends; ``small``: in ``[-4, 4]``, which every profile holds."""
    if small:
        return (step * rng.integers(-4 // step, 4 // step + 1, size=shape)).astype(np.int64)
    w = step * rng.integers(lo // step, hi // step + 1, size=shape)
    extremes = rng.random(shape) < 0.1
    w[extremes] = rng.choice([lo, hi], size=int(extremes.sum()))
    return w.astype(np.int64)


def _profile_bias(rng: np.random.Generator, profile: Profile, n: int, scale: int) -> np.ndarray:
    b = rng.integers(-scale, scale + 1, size=n)
    b[rng.random(n) < 0.15] = profile.bias_mant_min
    b[rng.random(n) < 0.15] = profile.bias_mant_max
    return np.clip(b, profile.bias_mant_min, profile.bias_mant_max).astype(np.int64)


def profile_node(rng: np.random.Generator, profile: Profile, name: str, shape: tuple[int, ...], readout: bool,
                 small: bool) -> IntegerNode:
    """A node at and inside the edges of ``profile``'s ranges: decay codes 0, 1, the largest and
    "none", thresholds 0, 1 and the largest, biases up to the inputs' sums and at both ends (or,
    ``small``, membranes of a few units, where one unit of rounding decides a spike). A readout
    keeps its membrane (decay "none") under the largest threshold."""
    if readout:
        dv, vth = profile.decay_none, profile.vth_max
    else:
        dv = _fpga_decay_code(rng, profile)
        if small:  # membranes of a few units: one unit of rounding decides a spike
            vth = int(rng.integers(1, 5))
        else:
            top = min(3000, profile.vth_max)
            vth = int(rng.choice([0, 1, profile.vth_max])) if rng.random() < 0.3 else int(rng.integers(1, top))
    if small:
        bias = rng.integers(-6, 7, size=shape[0]).astype(np.int64)
    else:  # membranes should both spike and clamp: biases up to the inputs' sums, and the extremes
        bias = _profile_bias(rng, profile, shape[0], int(rng.choice([500, 5000, 30000])))
    # drawn last, and only where the profile has a choice, so the FPGA chains' streams are as they were
    du = _pick(rng, [0, profile.decay_max], 0, profile.decay_max) if profile.current_stage else 0
    lo, hi = profile.bias_exp_min, profile.bias_exp_max
    bias_exp = _pick(rng, [lo, hi], lo, hi) if hi > lo else lo
    return IntegerNode(name=name, shape=shape, bias_mant=bias, bias_exp=bias_exp, du=du, dv=dv, vth=vth, scale=1.0,
                       readout=readout)
