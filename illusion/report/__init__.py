"""Verdicts -> what a run reports: the terminal table and failure messages, report.json, report.md
and report.html.

One module per output, all reading the same plain item records:

- ``records``: report.json (item records, per-language summaries, ``build_report``, ``write_report``)
- ``summary``: the cells, gate text and worst items that every format shows
- ``console``: the terminal table and the failure message of a recognition-only item
- ``markdown``: report.md, for pull-request comments
- ``html_report``: report.html, with its inline CSS and script
- ``page``: the self-contained page shell (and its Content-Security-Policy), shared with sweep.html
- ``plots``: small SVG charts, shared with sweep.html

A new report format is one more module that reads the report.json document (see ``markdown``).
The names below are what the plugin uses.
"""

from .console import consistency_message, format_table
from .records import build_report, item_record, language_table, write_report
from .summary import recovery_scope_text

__all__ = ["build_report", "consistency_message", "format_table", "item_record", "language_table",
           "recovery_scope_text", "write_report"]
