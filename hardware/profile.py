"""Fixed-point profiles: a target's integer arithmetic as one frozen value, and the one integer
LIF step written against it.

A profile holds every width, shift, range, rounding and overflow rule of a target's neuron and
synapse arithmetic, the form of its decay and its threshold comparison. The integer step
:meth:`Profile.lif_step` is written once, array-generic: the numpy integer reference
(:mod:`hardware.reference`) and the torch fake-quant path (:mod:`export.fake_quant`) both call it,
so they cannot drift apart; Lava and the RTL design remain independent oracles that the tests
compare against with ``==``.

A profile is data: a bundle stores it whole (:meth:`Profile.to_json`, :meth:`Profile.from_json`),
so a bundle runs on the reference and fake-quant paths whether or not this copy of lsg-deploy
knows the profile's name. The targets' own profiles live with their targets
(:mod:`hardware.targets`: ``loihi/profile.py``, ``fpga/profiles.py``).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from fractions import Fraction
from typing import Any

import numpy as np

from hardware import fixed_point as fp
from hardware.fixed_point import ArrayLike
from hardware.graph import INPUT, BundleError, Graph, activation_bound

#: how a value that leaves its width is brought back: ``wrap-once`` is Lava's single-step wrap of
#: the current (see ``fixed_point.wrap_current``), ``wrap`` two's complement, ``saturate`` a clip to
#: ``+-(2^(bits-1) - 1)``, ``checked`` never happens (the export proves the worst case fits)
OVERFLOW_RULES = ("wrap-once", "wrap", "saturate", "checked")
#: how a decay product ``p`` is brought back by ``>> s``: ``toward-zero`` (sign-magnitude shift),
#: ``floor`` (arithmetic shift), ``half-up`` (``(p + 2^(s-1)) >> s``: to nearest, ties up)
ROUNDING_RULES = ("toward-zero", "floor", "half-up")
#: the decay ``D(x, code)``: ``complement`` multiplies by ``2^s - code`` (Loihi's ``du``/``dv``),
#: ``multiply`` by ``code``, ``shift`` subtracts ``x >> code`` (no multiplier)
DECAY_FORMS = ("complement", "multiply", "shift")
THRESHOLDS = (">", ">=")


class ProfileError(ValueError):
    """A profile whose fields do not make a consistent arithmetic."""


def round_half_down(x: float | Fraction) -> int:
    """``x`` to the nearest integer, an exact tie (``k + 1/2``) to the smaller one, ``k``.

    Computed on the exact rational value of ``x`` (a float is a dyadic rational), so a tie is a
    tie however ``x`` was written: Python's ``round`` would send ``1.5`` to 2 (ties to even)."""
    return math.ceil(Fraction(x) - Fraction(1, 2))


@dataclass(frozen=True)
class Profile:
    """One target's integer arithmetic. Per neuron and step, with integer activation ``a`` (the
    sum over the node's incoming edges of ``W s``)::

        u <- overflow_current( D(u, du + 1) + (a << act_shift) )   with a current stage
        u <- a << act_shift                                          without one
        v <- overflow_voltage( D(v, dv) + u + bias )                 bias = bias_mant << bias_exp
        spike = v > (vth << vth_shift)   (or >=, per ``threshold``);   v[spike] = 0
        the readout: no spike, no reset (a pure integrator, held at the voltage limit)

    ``D(x, code)`` per ``decay_form``, with the product brought back by ``decay_rounding``:

    * ``complement``: ``R(x * (2^decay_shift - code))``, beta = 1 - code / 2^decay_shift
    * ``multiply``: ``R(x * code)``, beta = code / 2^decay_shift (``code = 2^decay_shift``: 1)
    * ``shift``: ``x - (x >> code)`` (arithmetic shift), beta = 1 - 2^-code, for
      ``code <= decay_shift``; ``code = decay_shift + 1`` leaves ``x`` unchanged (beta = 1)

    Conv outputs are brought to ``synapse_bits`` by ``synapse_overflow``; under ``checked`` the
    export proves that every node's summed activation fits ``synapse_bits`` (:meth:`check`).
    """

    name: str
    description: str
    weight_min: int
    weight_max: int
    weight_step: int  #: integer weights are multiples of this (Loihi's mixed sign drops the LSB)
    weight_exp_max: int  #: dense edges may shift their sums by up to this many bits (0: none)
    bias_mant_min: int
    bias_mant_max: int
    bias_exp_min: int
    bias_exp_max: int
    decay_form: str
    decay_shift: int  #: complement, multiply: codes are fractions of 2^decay_shift; shift: largest shift
    decay_rounding: str
    current_stage: bool  #: a decaying current u between the synapse and the membrane (Loihi)
    act_shift: int  #: synaptic input enters the current shifted left by this
    vth_shift: int  #: the threshold compares against vth << vth_shift
    vth_max: int
    threshold: str  #: ``>`` (Loihi) or ``>=`` (the float model's comparison)
    state_bits: int  #: width of u and v
    current_overflow: str
    voltage_overflow: str
    synapse_bits: int
    synapse_overflow: str
    #: inputs are integers in ``[0, 2^(input_bits - 1) - 1]``: what one step of input can carry
    #: (Loihi: a 24-bit signed graded spike); a graph's ``input_max`` may not exceed it
    input_bits: int

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if f.type == "int" and (isinstance(value, bool) or not isinstance(value, int)):
                raise ProfileError(f"profile {self.name}: {f.name} must be an integer")
            if f.type == "bool" and not isinstance(value, bool):
                raise ProfileError(f"profile {self.name}: {f.name} must be true or false")
        for rule in (self.current_overflow, self.voltage_overflow, self.synapse_overflow):
            if rule not in OVERFLOW_RULES:
                raise ProfileError(f"profile {self.name}: overflow rule {rule!r} not one of {OVERFLOW_RULES}")
        if self.voltage_overflow == "checked" or (self.current_stage and self.current_overflow == "checked"):
            raise ProfileError(f"profile {self.name}: the state's overflow cannot be proven away; wrap or saturate it")
        if self.decay_rounding not in ROUNDING_RULES:
            raise ProfileError(f"profile {self.name}: rounding {self.decay_rounding!r} not one of {ROUNDING_RULES}")
        if self.decay_form not in DECAY_FORMS:
            raise ProfileError(f"profile {self.name}: decay form {self.decay_form!r} not one of {DECAY_FORMS}")
        if self.threshold not in THRESHOLDS:
            raise ProfileError(f"profile {self.name}: threshold {self.threshold!r} not one of {THRESHOLDS}")
        if not (self.weight_min < 0 < self.weight_max and self.weight_step >= 1 and self.vth_max >= 0
                and self.bias_mant_min < 0 < self.bias_mant_max and 0 <= self.bias_exp_min <= self.bias_exp_max
                and self.weight_exp_max >= 0 and 1 <= self.decay_shift < self.state_bits <= 32
                and self.synapse_bits <= 48 and 2 <= self.input_bits <= 32):
            raise ProfileError(f"profile {self.name}: inconsistent ranges")

    # --- as data: the form a bundle stores -------------------------------------------------------

    def to_json(self) -> dict[str, Any]:
        """Every field, by name: what ``bundle.json`` stores as ``profile``."""
        return asdict(self)

    @classmethod
    def from_json(cls, doc: Any, where: str = "profile") -> Profile:
        """The profile a bundle stores (:meth:`to_json`): exactly the fields of :class:`Profile`,
        each of its declared type, and consistent (``__post_init__``); anything else is a
        :class:`~hardware.graph.BundleError` naming what is wrong."""
        if not isinstance(doc, dict):
            raise BundleError(f"{where}: expected the profile's fields as an object, got {type(doc).__name__}")
        expected = [f.name for f in fields(cls)]
        missing = [k for k in expected if k not in doc]
        extra = sorted(str(k) for k in doc if k not in expected)
        if missing or extra:
            problems = ([f"missing {', '.join(missing)}"] if missing else []) + (
                [f"unknown {', '.join(extra)}"] if extra else [])
            raise BundleError(f"{where}: " + "; ".join(problems))
        for f in fields(cls):
            if f.type == "str" and not isinstance(doc[f.name], str):
                raise BundleError(f"{where}: {f.name} must be text, got {type(doc[f.name]).__name__}")
        try:
            return cls(**doc)
        except ProfileError as exc:
            raise BundleError(f"{where}: {exc}") from None

    # --- codes and ranges ------------------------------------------------------------------------

    @property
    def decay_max(self) -> int:
        """Largest decay code."""
        if self.decay_form == "complement":
            return (1 << self.decay_shift) - 1
        if self.decay_form == "multiply":
            return 1 << self.decay_shift
        return self.decay_shift + 1

    @property
    def decay_none(self) -> int:
        """The decay code that keeps the membrane as it is (beta = 1): the readout's."""
        return 0 if self.decay_form == "complement" else self.decay_max

    @property
    def state_limit(self) -> int:
        return (1 << (self.state_bits - 1)) - 1

    @property
    def input_limit(self) -> int:
        """Largest input value one step can carry: ``2^(input_bits - 1) - 1``."""
        return (1 << (self.input_bits - 1)) - 1

    def ranges(self) -> dict[str, tuple[int, int]]:
        """Inclusive integer range of every per-layer field."""
        return {
            "weight": (self.weight_min, self.weight_max),
            "weight_exp": (-self.weight_exp_max, self.weight_exp_max),
            "bias_mant": (self.bias_mant_min, self.bias_mant_max),
            "bias_exp": (self.bias_exp_min, self.bias_exp_max),
            "du": (0, self.decay_max if self.current_stage else 0),
            "dv": (0, self.decay_max),
            "vth": (0, self.vth_max),
        }

    def code_to_beta(self, code: int) -> float:
        """The decay a code applies (exactly, below the rounding of one product)."""
        code = int(code)
        if not 0 <= code <= self.decay_max:
            raise ValueError(f"decay code must lie in [0, {self.decay_max}], got {code}")
        if self.decay_form == "complement":
            return ((1 << self.decay_shift) - code) / (1 << self.decay_shift)
        if self.decay_form == "multiply":
            return code / (1 << self.decay_shift)
        return 1.0 if code == self.decay_none else 1.0 - 2.0**-code

    def beta_to_code(self, beta: float) -> int:
        """Float ``beta`` -> the code whose decay is nearest, an exact tie to the smaller code
        (:func:`round_half_down`, on ``beta``'s exact value): ``complement``
        ``round_half_down((1 - beta) 2^decay_shift)`` (Loihi's ``dv = round((1 - beta) 4096)``),
        ``multiply`` ``round_half_down(beta 2^decay_shift)``, ``shift`` the nearest
        ``1 - 2^-code``. The inverse of :meth:`code_to_beta` on every code."""
        if not 0.0 <= beta <= 1.0:
            raise ValueError(f"beta must lie in [0, 1], got {beta}")
        exact, unity = Fraction(beta), 1 << self.decay_shift
        if self.decay_form == "complement":
            return min(max(round_half_down((1 - exact) * unity), 0), self.decay_max)
        if self.decay_form == "multiply":
            return min(max(round_half_down(exact * unity), 0), self.decay_max)
        distance = [abs(exact - Fraction(self.code_to_beta(c))) for c in range(self.decay_max + 1)]
        return distance.index(min(distance))  # the first, i.e. the smaller code, on a tie

    def spike_level(self, vth: int) -> int:
        """Smallest integer membrane that spikes."""
        return (int(vth) << self.vth_shift) + (1 if self.threshold == ">" else 0)

    def scale_for_threshold(self, vth: int, v_th_float: float) -> float:
        """Membrane scale that maps the float threshold exactly onto the integer spike level.

        The float model spikes on ``u >= v_th``. With the integer membrane ``2^act_shift S u``,
        ``S = spike_level(vth) / (2^act_shift v_th)`` makes a float membrane exactly at ``v_th``
        exactly the smallest integer membrane that spikes (for Loihi's strict ``>``, the integer
        threshold sits one below the float one)."""
        return self.spike_level(vth) / ((1 << self.act_shift) * v_th_float)

    def threshold_for_scale(self, v_th_float: float, scale_max: float) -> int:
        """The largest ``vth`` whose exact scale (:meth:`scale_for_threshold`) is at most
        ``scale_max``, within ``[0, vth_max]`` (at least 1 under ``>=``, where 0 always spikes)."""
        low = 1 if self.threshold == ">=" else 0
        if not math.isfinite(scale_max):
            return self.vth_max
        offset = 1 if self.threshold == ">" else 0
        vth = math.floor(((1 << self.act_shift) * v_th_float * scale_max - offset) / (1 << self.vth_shift))
        return min(max(vth, low), self.vth_max)

    # --- the arithmetic ---------------------------------------------------------------------------

    def _round_shift(self, p: ArrayLike) -> ArrayLike:
        s = self.decay_shift
        if self.decay_rounding == "toward-zero":
            return fp.shift_toward_zero(p, s)
        if self.decay_rounding == "half-up":
            return (p + (1 << (s - 1))) >> s
        return p >> s

    def decay(self, x: ArrayLike, code: int) -> ArrayLike:
        """``D(x, code)`` on int64 arrays or tensors."""
        x = fp.as_int64(x)
        code = int(code)
        if self.decay_form == "complement":
            return self._round_shift(x * ((1 << self.decay_shift) - code))
        if self.decay_form == "multiply":
            return self._round_shift(x * code)
        return x if code == self.decay_none else x - (x >> code)

    def _overflow(self, x: ArrayLike, rule: str, bits: int) -> ArrayLike:
        if rule == "wrap-once":
            return fp.wrap_current(x, bits)
        if rule == "wrap":
            return fp.wrap_signed(x, bits)
        if rule == "checked":
            return x
        return fp.clip_voltage(x, (1 << (bits - 1)) - 1)

    def synapse(self, raw: ArrayLike) -> ArrayLike:
        """A conv layer's exact integer output brought to the synapse width."""
        return self._overflow(raw, self.synapse_overflow, self.synapse_bits)

    def integrate(self, a: ArrayLike, u: ArrayLike, v: ArrayLike, du: int, dv: int, bias: ArrayLike
                  ) -> tuple[ArrayLike, ArrayLike, dict[str, int]]:
        """The step up to the threshold: ``(u, v before the threshold, counts)`` for int64 arrays or
        tensors, with how many currents overflowed (``u_wrap``) and membranes saturated (``v_clip``)."""
        a = fp.as_int64(a)
        if self.current_stage:
            u_raw = self.decay(u, du + 1) + (a << self.act_shift)
            u = self._overflow(u_raw, self.current_overflow, self.state_bits)
            u_wrap = fp.count(u != u_raw)
        else:
            u, u_wrap = a << self.act_shift, 0
        v_raw = self.decay(v, dv) + u + bias
        v = self._overflow(v_raw, self.voltage_overflow, self.state_bits)
        return u, v, {"u_wrap": u_wrap, "v_clip": fp.count(v != v_raw)}

    def fires(self, v: ArrayLike, vth: int) -> ArrayLike:
        """Which membranes ``v`` (before the reset) spike at threshold ``vth``."""
        level = int(vth) << self.vth_shift
        return v > level if self.threshold == ">" else v >= level

    def lif_step(self, a: ArrayLike, u: ArrayLike, v: ArrayLike, du: int, dv: int, bias: ArrayLike, vth: int,
                 readout: bool = False) -> tuple[ArrayLike, ArrayLike, ArrayLike, dict[str, int]]:
        """One step for int64 arrays or tensors (any shape, ``bias`` broadcast): :meth:`integrate`,
        :meth:`fires`, and the reset to 0; returns ``(spikes, u, v, counts)``.

        The ``readout`` is a pure integrator: it never fires and never resets, its membrane stays at
        the voltage rule's limit once it reaches it (``v_clip`` counts that). Were it a LIF, the class
        that saturates first would fire, reset to 0 and lose its evidence."""
        u, v, counts = self.integrate(a, u, v, du, dv, bias)
        if readout:
            return v < v, u, v, counts  # all False, of v's kind (array or tensor) and shape
        spikes = self.fires(v, vth)
        return spikes, u, fp.where(spikes, 0, v), counts

    # --- what a graph of this profile must satisfy ------------------------------------------------

    def check_edge(self, edge) -> None:
        """Refuse an integer edge whose weights or exponent this profile cannot hold."""
        n, (lo, hi) = edge.name, self.ranges()["weight"]
        if edge.weight.size and (edge.weight.min() < lo or edge.weight.max() > hi):
            raise BundleError(f"edge {n}: weight range [{edge.weight.min()}, {edge.weight.max()}] outside "
                              f"[{lo}, {hi}] of profile {self.name}")
        if np.any(edge.weight % self.weight_step):
            raise BundleError(f"edge {n}: weights must be multiples of {self.weight_step} in profile {self.name}")
        if edge.geometry.kind == "conv" and edge.weight_exp != 0:
            raise BundleError(f"edge {n}: conv synapses have no weight exponent (got {edge.weight_exp})")
        if abs(edge.weight_exp) > self.weight_exp_max:
            raise BundleError(f"edge {n}: weight exponent {edge.weight_exp} outside "
                              f"[{-self.weight_exp_max}, {self.weight_exp_max}] of profile {self.name}")

    def check_node(self, node) -> None:
        """Refuse an integer node whose fields leave this profile's ranges."""
        for what, (lo, hi) in self.ranges().items():
            if what in ("weight", "weight_exp"):
                continue
            arr = np.asarray(getattr(node, what))
            if arr.size and (arr.min() < lo or arr.max() > hi):
                raise BundleError(f"node {node.name}: {what} range [{arr.min()}, {arr.max()}] outside [{lo}, {hi}]"
                                  f" of profile {self.name}")

    def check_input(self, spec) -> None:
        """Refuse an input (:class:`hardware.graph.Input`) whose ``input_max`` this profile cannot carry."""
        if spec.input_max > self.input_limit:
            raise BundleError(f"input_max {spec.input_max} exceeds {self.input_limit}, the largest input a step "
                              f"carries in profile {self.name} ({self.input_bits}-bit signed input values)")

    def accumulator_excess(self, graph: Graph, input_bound: int) -> list[tuple[str, int]]:
        """Nodes whose worst-case summed activation leaves a ``checked`` synapse width, with it."""
        if self.synapse_overflow != "checked":
            return []
        limit = (1 << (self.synapse_bits - 1)) - 1
        worst = {n.name: activation_bound(graph, n.name, input_bound) for n in graph.nodes}
        return [(name, w) for name, w in worst.items() if w > limit]

    def readout_peak(self, graph: Graph, timesteps: int) -> int:
        """The largest value the readout's membrane can reach in ``timesteps`` steps, whatever the
        input and the hidden spikes (what a threshold would be compared with):
        ``T (U + max(bias, 0))``, with ``U`` the largest current a step can bring: the positive
        weights' sum (times ``input_max`` from the input) ``<< act_shift``, ``T`` times that where
        the current stage keeps memory; where a wrap could happen (a conv output past the synapse
        width, a current past the state width), any value up to that width's limit. It holds for
        any membrane decay, since ``D(x) <= max(x, 0)`` for every form and rounding."""
        node, steps = graph.readout, int(timesteps)
        up = down = 0  # the largest positive and negative activation a step can bring
        for edge in graph.incoming(node.name):
            w = edge.weight.astype(np.int64).reshape(edge.weight.shape[0], -1)
            scale = graph.input.input_max if edge.source == INPUT else 1
            pos = int(np.clip(w, 0, None).sum(axis=1).max()) * scale
            neg = int(np.clip(-w, 0, None).sum(axis=1).max()) * scale
            wraps = self.synapse_overflow != "checked" and max(pos, neg) >= 1 << (self.synapse_bits - 1)
            if edge.geometry.kind == "conv" and wraps:
                pos = neg = 1 << (self.synapse_bits - 1)  # a wrapped sum may land anywhere in the width
            elif edge.geometry.kind == "dense":
                exp = int(edge.weight_exp)
                pos, neg = (pos << exp, neg << exp) if exp >= 0 else (pos >> -exp, -((-neg) >> -exp))
            up, down = up + pos, down + neg
        sums = steps if self.current_stage and node.du != self.decay_max else 1  # a current with memory
        current = (up << self.act_shift) * sums
        limit = 1 << (self.state_bits - 1)
        swing = (max(up, down) << self.act_shift) * sums
        if self.current_stage and self.current_overflow != "checked" and swing >= limit:
            current = limit  # a wrapped current may land anywhere in the width
        bias = fp.effective_bias(np.asarray(node.bias_mant), node.bias_exp)
        return steps * (current + max(int(np.max(bias, initial=0)), 0))

    def check(self, graph: Graph) -> None:
        """Refuse an integer graph this profile cannot run exactly: every field in range, and
        under a ``checked`` synapse every node's worst-case sum within ``synapse_bits``, and the
        input's ``input_max`` within ``input_bits``."""
        self.check_input(graph.input)
        for e in graph.edges:
            self.check_edge(e)
        for n in graph.nodes:
            self.check_node(n)
        excess = self.accumulator_excess(graph, graph.input.input_max)
        if excess:
            name, worst = excess[0]
            raise BundleError(f"node {name}: worst-case synaptic sum {worst} does not fit the {self.synapse_bits}-bit "
                              f"accumulator of profile {self.name}")
