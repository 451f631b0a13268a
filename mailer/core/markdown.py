"""A step's Markdown body as an HTML fragment and as plain text that say the same words in the same order."""

from __future__ import annotations

import re
import textwrap
from functools import cache

from markdown_it import MarkdownIt
from markdown_it.token import Token
from markdown_it.tree import SyntaxTreeNode

WIDTH = 72  # plain-text lines; RFC 5322 asks for under 78, and quoting in replies adds "> "

# Characters that can open or close Markdown syntax where a value lands: emphasis, links, headings,
# list markers, entities, code, autolinks (which work even with raw HTML off), tables' pipes, titles' quotes.
_SPECIAL = re.compile(r"""([\\`*_{}\[\]()#+\-.!<>|~&"'])""")
_NEWLINES = re.compile(r"[\r\n\t\f\v\u2028\u2029]+")


def escape(value: object) -> str:
    """`value` as Markdown that renders as exactly its text: a name like `*Smith*` or `[x](javascript:…)`
    stays literal. Line breaks become spaces, so a value cannot start a heading or a list of its own."""
    return _SPECIAL.sub(r"\\\1", _NEWLINES.sub(" ", str(value)))


@cache
def _parser() -> MarkdownIt:
    # CommonMark with raw HTML off; images off too, because an email must not fetch anything
    return MarkdownIt("commonmark", {"html": False, "linkify": False, "typographer": False}).disable("image")


def _tokens(source: str) -> list[Token]:
    tokens = _parser().parse(source)
    for token in tokens:
        # the layout's h1 is the message's one heading (the subject); the body's headings sit below it
        if token.type in ("heading_open", "heading_close"):
            token.tag = f"h{min(int(token.tag[1]) + 1, 6)}"
    return tokens


def to_html(source: str) -> str:
    """The HTML fragment for a Markdown body (no raw HTML, no images; headings start at h2)."""
    md = _parser()
    return str(md.renderer.render(_tokens(source), md.options, {}))


def to_text(source: str, width: int = WIDTH) -> str:
    """The plain-text rendering: links as `text <url>`, lists as `- ` or `1. `, emphasis dropped, paragraphs
    wrapped at `width` columns without ever breaking a URL or a word."""
    tree = SyntaxTreeNode(_tokens(source))
    return "\n\n".join(_blocks(tree.children, width)) + "\n"


def _blocks(nodes: list[SyntaxTreeNode], width: int) -> list[str]:
    return [text for node in nodes if (text := _block(node, width))]


def _block(node: SyntaxTreeNode, width: int) -> str:
    kind = node.type
    if kind in ("paragraph", "heading"):
        return _wrap(_inline(node.children[0]) if node.children else "", width)
    if kind in ("bullet_list", "ordered_list"):
        start = int(str(node.attrs.get("start", 1)))
        items = []
        for n, item in enumerate(node.children):
            marker = "- " if kind == "bullet_list" else f"{start + n}. "
            loose = any(child.type == "paragraph" and not child.hidden for child in item.children)
            body = ("\n\n" if loose else "\n").join(_blocks(item.children, max(width - len(marker), 20)))
            items.append(_indent(body, marker, " " * len(marker)))
        loose = any(not child.hidden for item in node.children for child in item.children
                    if child.type == "paragraph")
        return ("\n\n" if loose else "\n").join(items)
    if kind == "blockquote":
        return _indent("\n\n".join(_blocks(node.children, max(width - 2, 20))), "> ", "> ")
    if kind in ("code_block", "fence"):
        return "\n".join("    " + line for line in node.content.rstrip("\n").split("\n"))
    if kind == "hr":
        return "-" * 3
    return ""  # html_block cannot occur with raw HTML off


def _inline(node: SyntaxTreeNode) -> str:
    out: list[str] = []
    for child in node.children:
        kind = child.type
        if kind in ("text", "code_inline"):
            out.append(child.content)
        elif kind == "softbreak":
            out.append(" ")
        elif kind == "hardbreak":
            out.append("\n")
        elif kind == "link":
            text, href = _inline(child), str(child.attrs.get("href", ""))
            if child.markup == "autolink":
                out.append(text if href.startswith("mailto:") else f"<{href}>")
            else:
                out.append(f"{text} <{href}>" if text and text != href else f"<{href}>")
        else:  # em, strong and whatever else nests: its words, without the markup
            out.append(_inline(child))
    return "".join(out)


def _wrap(text: str, width: int) -> str:
    wrapper = textwrap.TextWrapper(width=width, break_long_words=False, break_on_hyphens=False)
    return "\n".join("\n".join(wrapper.wrap(line)) for line in text.split("\n"))


def _indent(text: str, first: str, rest: str) -> str:
    lines = text.split("\n")
    return "\n".join((first if i == 0 else rest) + line if line else rest.rstrip()
                     for i, line in enumerate(lines))
