"""The residual net and the event net end to end on their defaults, as a user runs them:
``train`` -> ``export --target loihi`` -> ``simulate --fixed-point --backend all`` on the whole
test split. Each must reach its accuracy target in float, stay within one point in fixed point,
and Lava must equal the integer reference bit for bit on every node and the readout.

About 2 minutes on 2 cores (training ~40 s + ~20 s, Lava on 360 samples ~40 s + ~25 s).
"""

from __future__ import annotations

import contextlib
import io
import json
from dataclasses import dataclass
from pathlib import Path

import pytest

from hardware.bundle import read_bundle
from lsg_deploy.cli import main

# slow: two default trainings and Lava on 360 images each (make test-all). make test covers it by
# test_architectures.py::test_a_residual_net_exports_everything_but_netx_and_simulates_exactly (a
# tiny digits-resnet through train, export (netx skipped in one line) and simulate --backend all:
# Lava == reference on 40 images), test_events.py::test_train_cli_on_digits_events, the residual
# graph on direct and event-frame inputs in test_lava_backend.py, and tests/test_goldens.py
pytestmark = pytest.mark.slow


@dataclass(frozen=True)
class Run:
    bundle: Path
    report: dict
    export_stderr: str


def _end_to_end(root: Path, *train_args: str) -> Run:
    model, bundle, report = root / "run", root / "bundle", root / "report.json"
    assert main(["train", *train_args, "--out", str(model), "--quiet"]) == 0
    with contextlib.redirect_stderr(io.StringIO()) as err:
        assert main(["export", "--target", "loihi", str(model / "model.pt"), "--out", str(bundle), "--quiet"]) == 0
    assert main(["simulate", "--fixed-point", str(bundle), "--backend", "all", "--json", str(report),
                 "--quiet"]) == 0
    return Run(bundle, json.loads(report.read_text()), err.getvalue())


@pytest.fixture(scope="module")
def resnet(tmp_path_factory) -> Run:
    return _end_to_end(tmp_path_factory.mktemp("resnet"), "--arch", "digits-resnet")


@pytest.fixture(scope="module")
def events(tmp_path_factory) -> Run:
    return _end_to_end(tmp_path_factory.mktemp("events"), "--dataset", "digits-events")


def _check_accuracy_and_exactness(run: Run, float_target: float) -> None:
    acc = run.report["accuracy"]
    assert run.report["samples"] == 360
    assert acc["float"] >= float_target, acc
    assert acc["folded_float"] == acc["float"]
    assert abs(acc["reference"] - acc["float"]) <= 0.01, acc
    assert acc["lava"] == acc["reference"]
    exact = run.report["exact"]
    assert exact["equal"] is True and set(exact["mismatches"].values()) == {0}


def test_digits_resnet_reaches_95_percent_and_lava_equals_the_reference(resnet):
    _check_accuracy_and_exactness(resnet, 0.95)
    assert set(resnet.report["exact"]["mismatches"]) == {"stem", "res1.conv1", "res1", "res2.conv1", "res2", "fc1",
                                                         "readout"}


def test_digits_resnet_skips_netx_in_one_line_and_records_it(resnet):
    lines = resnet.export_stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("WARNING: skipped model.net: lava-dl netx holds chains")
    bundle = read_bundle(resnet.bundle)
    assert set(bundle.artifacts) == {"nir", "netx", "source_model"} and "skipped" in bundle.artifacts["netx"]
    assert not (resnet.bundle / "model.net").exists() and (resnet.bundle / "model.nir").exists()
    assert resnet.report["artifacts"]["netx"] == bundle.artifacts["netx"]


def test_digits_events_reaches_90_percent_and_lava_equals_the_reference(events):
    _check_accuracy_and_exactness(events, 0.90)
    assert events.report["input_encoding"] == "event-frames"
    bundle = read_bundle(events.bundle)
    assert bundle.input.encoding == "event-frames" and bundle.input.input_max == 1
    assert bundle.input.shape == (2, 12, 12) and bundle.integer_graph.is_chain
    assert bundle.artifacts["netx"] == {"file": "model.net"} and events.export_stderr == ""
