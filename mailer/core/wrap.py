"""Plain-text parts wrapped at 72 columns, as the Markdown steps already are: words and URLs never broken."""

from __future__ import annotations

import re
import textwrap

WIDTH = 72  # RFC 5322 asks for lines under 78; quoting in replies adds "> "
# the indentation a wrapped line keeps: an indented label ("  Where: "), or leading spaces and a list bullet
_LEAD = re.compile(r"^(?:\s+\w+:\s+|\s*(?:(?:[-*•]|\d{1,2}[.)])\s+)?)")


def wrap_text(text: str, width: int = WIDTH) -> str:
    """Every line longer than `width` wrapped, continuation lines indented under the line's text."""
    out = []
    for line in text.split("\n"):
        if len(line) <= width:
            out.append(line)
            continue
        lead = _LEAD.match(line)
        first = lead.group(0) if lead else ""
        wrapper = textwrap.TextWrapper(width=width, initial_indent=first, subsequent_indent=" " * len(first),
                                       break_long_words=False, break_on_hyphens=False)
        out.append("\n".join(wrapper.wrap(line[len(first):])) or line)
    return "\n".join(out)
