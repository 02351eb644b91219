"""What simulate prints: JSON on stdout with ``--json -``, one accuracy line with ``--quiet``,
speeds as measured and per-layer counts in words, never Python dicts."""

from __future__ import annotations

import dataclasses
import json

from lsg_deploy.cli import main
from lsg_deploy.report import Report, format_report, per_layer
from lsg_deploy.report.model import Exact
from lsg_deploy.report.text import _rate


def test_json_dash_writes_the_report_to_stdout_and_no_file(default_run, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["simulate", "--fixed-point", str(default_run.bundle), "--json", "-", "--limit", "20"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["samples"] == 20 and "reference" in report["accuracy"]
    assert list(tmp_path.iterdir()) == []  # no file named '-' nor '-.png'


def test_quiet_alone_prints_the_accuracy_line_and_with_json_nothing(default_run, tmp_path, capsys):
    assert main(["simulate", "--fixed-point", str(default_run.bundle), "--quiet", "--limit", "20"]) == 0
    (line,) = capsys.readouterr().out.splitlines()
    assert line.startswith("accuracy on 20 test samples: float ") and "reference" in line
    assert main(["simulate", "--fixed-point", str(default_run.bundle), "--quiet", "--limit", "20",
                 "--json", str(tmp_path / "r.json")]) == 0
    assert capsys.readouterr().out == ""
    assert json.loads((tmp_path / "r.json").read_text())["samples"] == 20


def test_the_json_is_the_whole_report(default_run):
    """What --json writes reads back as the same report, which writes the same JSON."""
    report = Report.from_json(default_run.report)
    assert report.to_json() == default_run.report
    assert Report.from_json(report.to_json()) == report


def test_speeds_are_printed_as_measured_and_counts_in_words(default_run):
    assert _rate(0.0421) == "0.0421" and _rate(12.5) == "12.5" and _rate(18834.4) == "18,834"
    assert per_layer({"conv1": 0, "fc1": 2}) == "conv1 0, fc1 2"
    report = {**default_run.report, "exact": {"pair": "reference == lava", "equal": False,
                                              "mismatches": {"conv1": 0, "fc1": 2}},
              "export_clipped": {"conv1": {"weight": 3, "bias": 0}}}
    text = format_report(Report.from_json(report))
    assert "mismatches per layer: conv1 0, fc1 2" in text and "conv1 weight 3, bias 0" in text
    assert "{" not in text


def test_the_demo_report_fits_a_screen(default_run):
    """The digits network's report stays within 38 lines, and with --backend all's four more
    (Lava's accuracy, its run, the bit-exact verdict, its accuracy per class) within 42; the
    sources of its figures are under --verbose."""
    report = Report.from_json(default_run.report)
    per_class = report.per_class.accuracy
    every = dataclasses.replace(
        report, backends=(*report.backends, dataclasses.replace(report.backends[0], name="lava")),
        exact=Exact({"lava": {"conv1": 0}}),
        per_class=dataclasses.replace(report.per_class, accuracy={**per_class, "lava": per_class["reference"]}))
    assert len(format_report(report).splitlines()) <= 38
    assert len(format_report(every).splitlines()) == len(format_report(report).splitlines()) + 4 <= 42
    verbose = format_report(report, verbose=True)
    assert "note: " in verbose and "ISSCC" in verbose and "note: " not in format_report(report)


def test_figures_tell_layers_and_implementations_apart():
    from lsg_deploy.report import IMPLEMENTATION_COLOURS
    from training.plots import layer_colours

    for n in (6, 12):  # digits-resnet's six layers were six shades of one hue under viridis
        assert len(set(layer_colours(n))) == n
    assert len(set(IMPLEMENTATION_COLOURS.values())) == len(IMPLEMENTATION_COLOURS) == 4
