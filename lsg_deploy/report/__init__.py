"""The simulate report: a typed model (:mod:`.model`, filled by :mod:`lsg_deploy.simulate`),
its text (:mod:`.text`) and its figure (:mod:`.figure`); docs/report.md reads it line by line."""

from lsg_deploy.report.figure import IMPLEMENTATION_COLOURS, colour, figure_png
from lsg_deploy.report.model import Report, per_layer
from lsg_deploy.report.text import accuracy_line, format_report

__all__ = ["IMPLEMENTATION_COLOURS", "Report", "accuracy_line", "colour", "figure_png", "format_report", "per_layer"]
