"""The wheel holds every package of the source tree and the RTL's Verilog (and lint waivers), and installed on its
own it is the whole tool: train (on CIFAR files), export and simulate run from it, outside the
checkout (a hand-kept package list once left out ``training.datasets``, now training.data)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest
from datafiles import write_cifar

ROOT = Path(__file__).resolve().parents[1]
TOP_LEVEL = ("lsg_deploy", "training", "export", "hardware", "lsg_io")


def _wheel(tmp_path: Path) -> tuple[Path, Path]:
    """Build the wheel from a copy of the sources (building in the checkout would leave build/
    there); returns ``(wheel, source copy)``."""
    source = tmp_path / "src"
    source.mkdir()
    shutil.copy(ROOT / "pyproject.toml", source)
    for name in TOP_LEVEL:
        shutil.copytree(ROOT / name, source / name, ignore=shutil.ignore_patterns("__pycache__"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", str(source),
                    "-w", str(tmp_path / "dist")], check=True, capture_output=True)
    (wheel,) = (tmp_path / "dist").glob("lsg_deploy-*.whl")
    return wheel, source


def test_the_wheel_holds_every_package_and_the_verilog(tmp_path):
    wheel, source = _wheel(tmp_path)
    packed = set(zipfile.ZipFile(wheel).namelist())
    wanted = {p.relative_to(source).as_posix() for name in TOP_LEVEL
              for p in (source / name).rglob("*") if p.suffix in (".py", ".v", ".vlt")}
    assert wanted - packed == set()
    assert "training/data/cifar.py" in packed and "hardware/targets/fpga/rtl/lif_neuron.v" in packed


# slow: a wheel installed into a fresh environment, then train, export and simulate (make test-all).
# make test covers it by test_the_wheel_holds_every_package_and_the_verilog (what the wheel holds)
# and the CLI tests that run the same commands from the checkout (tests/test_cifar.py on CIFAR files)
@pytest.mark.slow
def test_the_installed_wheel_trains_on_cifar_files_exports_and_simulates(tmp_path):
    """A fresh environment holding the wheel (its dependencies borrowed from this one's
    site-packages through a path file, which does not run this checkout's editable finder) runs
    the pipeline from a directory outside the checkout, on CIFAR-10 files in the real format."""
    wheel, _ = _wheel(tmp_path)
    env = tmp_path / "env"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(env)], check=True)
    site = Path(sysconfig.get_path("purelib", vars={"base": str(env), "platbase": str(env)}))
    (site / "borrowed.pth").write_text(sysconfig.get_path("purelib") + "\n")
    subprocess.run([sys.executable, "-m", "pip", "--python", str(env / "bin" / "python"), "install", "-q",
                    "--no-deps", "--no-index", str(wheel)], check=True, capture_output=True)
    work = tmp_path / "work"
    write_cifar(work / "data", "cifar10")
    environ = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}

    def cli(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([str(env / "bin" / "lsg-deploy"), *args], cwd=work, env=environ, capture_output=True,
                              text=True, timeout=600)

    where = subprocess.run([str(env / "bin" / "python"), "-c", "import lsg_deploy, training.data.cifar as c; "
                            "print(lsg_deploy.__file__); print(c.__file__)"], cwd=work, env=environ,
                           capture_output=True, text=True, check=True).stdout.split()
    assert all(Path(f).is_relative_to(env) for f in where), where  # the wheel's modules, not the checkout's
    steps = [("train", "--dataset", "cifar10", "--data-dir", "data", "--no-verify-data", "--no-normalize", "--arch",
              "resnet19", "--width", "0.03125", "--timesteps", "2", "--epochs", "1", "--batch-size", "16",
              "--out", "run", "--quiet"),
             ("export", "--target", "loihi", "run/model.pt", "--out", "bundle", "--no-verify-data", "--quiet"),
             ("simulate", "--fixed-point", "bundle", "--no-verify-data", "--limit", "8", "--quiet")]
    for args in steps:
        proc = cli(*args)
        assert proc.returncode == 0, f"{args[0]}: {proc.stderr}"
    assert proc.stdout.startswith("accuracy on 8 test samples: ")
