"""HTML reports of fitted maskers (templates are package data under ``templates/``)."""

from daskmasker.report.html import Report, generate_report

__all__ = ["Report", "generate_report"]
