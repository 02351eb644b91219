"""The Loihi target's one profile: Loihi 2 as Lava 0.10.0's bit-accurate ``fixed_pt`` models
compute it (the facts and their sources are in :mod:`hardware.fixed_point`)."""

from __future__ import annotations

from hardware import fixed_point as fp
from hardware.profile import Profile

#: Loihi 2's widest graded spike: a signed 24-bit payload (Lava's ``num_message_bits = 24``, which
#: :mod:`hardware.targets.loihi.lava.backend` gives the synapses that read direct-encoded input, and the widest of
#: netx's ``input_message_bits``): inputs in ``[0, 2^23 - 1]``
GRADED_SPIKE_BITS = 24


LOIHI2 = Profile(
    name="loihi2-lava-0.10-fixed_pt",
    description="Loihi 2 as Lava 0.10.0's fixed_pt models compute it",
    weight_min=fp.WEIGHT_MIN, weight_max=fp.WEIGHT_MAX, weight_step=fp.WEIGHT_STEP, weight_exp_max=8,
    bias_mant_min=fp.BIAS_MANT_MIN, bias_mant_max=fp.BIAS_MANT_MAX,
    bias_exp_min=fp.BIAS_EXP_MIN, bias_exp_max=fp.BIAS_EXP_MAX,
    decay_form="complement", decay_shift=fp.DECAY_SHIFT, decay_rounding="toward-zero", current_stage=True,
    act_shift=fp.ACT_SHIFT, vth_shift=fp.VTH_SHIFT, vth_max=fp.VTH_MAX, threshold=">",
    state_bits=fp.STATE_BITS, current_overflow="wrap-once", voltage_overflow="saturate",
    synapse_bits=fp.CONV_OUT_BITS, synapse_overflow="wrap", input_bits=GRADED_SPIKE_BITS,
)
