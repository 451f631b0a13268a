"""CSV output that a spreadsheet opens as data: no cell can run as a formula (CSV injection).

A cell whose text starts with `=`, `+`, `-`, `@`, a tab or a carriage return, also after leading
whitespace, is run as a formula by Excel, LibreOffice or Google Sheets. Such a cell gets a leading
single quote, as OWASP recommends: the spreadsheet then shows the text as it is. Pure: it writes only
to the stream it is given.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Mapping, Sequence
from typing import TextIO

FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
LIST_SEPARATOR = "; "


def _text(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, list | tuple | set | frozenset):
        items = sorted(value, key=str) if isinstance(value, set | frozenset) else value
        return LIST_SEPARATOR.join(_text(v) for v in items)
    return str(value)


def safe_cell(value: object) -> str:
    """The cell's text, with a leading `'` when a spreadsheet would otherwise run it as a formula.

    None is an empty cell; a list, tuple or set is its items joined with "; ".
    """
    text = _text(value)
    if text.startswith(FORMULA_START) or text.lstrip().startswith(FORMULA_START):
        return "'" + text
    return text


def write_csv(rows: Iterable[Mapping[str, object]], fields: Sequence[str], out: TextIO) -> None:
    """A header of `fields`, then one line per row (a missing field is an empty cell), every cell safe.

    Open a file for `out` with newline="", as the csv module asks; lines end in CRLF, as RFC 4180 says.
    """
    writer = csv.writer(out)
    writer.writerow([safe_cell(f) for f in fields])
    for row in rows:
        writer.writerow([safe_cell(row.get(f)) for f in fields])
