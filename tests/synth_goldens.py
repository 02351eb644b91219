"""The recorded yosys and nextpnr reports in ``tests/goldens/synth/`` that ``tests/test_fpga_synth.py``
parses without the tools: a tiny random chain's IP core (1 lane) synthesized and placed on both
parts, and one placement that fails for want of logic cells (the iCE40 HX1K: 1,280 of them).

    .venv/bin/python -m tests.synth_goldens [PART ...]   (needs the synth extra: pip install -e .[synth])

records every part's reports, or only those of the PARTs named (``none``: only the failure).
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import replace
from pathlib import Path

from hardware.targets.fpga import synth
from hardware.targets.fpga.profiles import FPGA_MUL
from hardware.targets.fpga.rtl.chain import chain_from_tables
from hardware.targets.fpga.tables import read_tables, write_tables
from tests.netgen_chains import random_fpga_chain

GOLDENS = Path(__file__).resolve().parent / "goldens" / "synth"
SEED, TIMESTEPS = 4, 2
#: an iCE40 too small for the tiny design's logic
TOO_SMALL = replace(synth.ICE40_UP5K, key="ice40-hx1k", name="iCE40 HX1K",
                    nextpnr_args=("--hx1k", "--package", "tq144"),
                    available={**synth.ICE40_UP5K.available, "logic": 1280, "luts": 1280, "ffs": 1280, "bram": 16})


def tiny_design(directory: Path, weights: str = "rom") -> tuple[object, list[str]]:
    """The IP core of random chain :data:`SEED` (fpga-mul, one lane) written in ``directory``."""
    tables = directory / "tables"
    tables.mkdir(parents=True)
    write_tables(random_fpga_chain(SEED, FPGA_MUL), FPGA_MUL, TIMESTEPS, tables)
    chain = chain_from_tables(read_tables(tables), max_lanes=1, weights=weights)
    return chain, synth.write_core(chain, tables, directory / "design")


def record(parts: tuple[synth.Part, ...] = (synth.ICE40_UP5K, synth.ECP5_25F)) -> None:
    GOLDENS.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        _, sources = tiny_design(Path(tmp))
        design = Path(tmp) / "design"
        if synth.ICE40_UP5K not in parts:
            synth.run_yosys(synth.ICE40_UP5K, design, sources)
        for part in parts:
            synth.run_yosys(part, design, sources)
            report, log, _ = synth.run_nextpnr(part, design, 100.0)
            assert report is not None, log
            shutil.copyfile(design / f"{part.key}.stat.json", GOLDENS / f"{part.key}.stat.json")
            shutil.copyfile(design / f"{part.key}.report.json", GOLDENS / f"{part.key}.report.json")
        shutil.copyfile(design / f"{synth.ICE40_UP5K.key}.json", design / f"{TOO_SMALL.key}.json")
        report, log, _ = synth.run_nextpnr(TOO_SMALL, design, 100.0)
        assert report is None, "the HX1K placed the tiny design"
        (GOLDENS / f"{TOO_SMALL.key}.nextpnr.log").write_text(log)


if __name__ == "__main__":
    import sys

    named = tuple(synth.PARTS[k] for k in sys.argv[1:] if k != "none")
    record(named if len(sys.argv) > 1 else (synth.ICE40_UP5K, synth.ECP5_25F))
