"""The wheel holds every package of the source tree and the RTL's Verilog: a non-editable install
is the whole tool (a hand-kept package list once left out ``training.datasets``)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TOP_LEVEL = ("lsg_deploy", "training", "export", "hardware")


def test_the_wheel_holds_every_package_and_the_verilog(tmp_path):
    source = tmp_path / "src"  # a copy: building in the checkout would leave build/ there
    source.mkdir()
    shutil.copy(ROOT / "pyproject.toml", source)
    for name in TOP_LEVEL:
        shutil.copytree(ROOT / name, source / name, ignore=shutil.ignore_patterns("__pycache__"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", str(source),
                    "-w", str(tmp_path / "dist")], check=True, capture_output=True)
    (wheel,) = (tmp_path / "dist").glob("lsg_deploy-*.whl")
    packed = set(zipfile.ZipFile(wheel).namelist())
    wanted = {p.relative_to(source).as_posix() for name in TOP_LEVEL
              for p in (source / name).rglob("*") if p.suffix in (".py", ".v")}
    assert wanted - packed == set()
    assert "training/datasets/cifar.py" in packed and "hardware/rtl/lif_neuron.v" in packed
