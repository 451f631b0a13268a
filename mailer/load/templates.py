"""The program's templates folder as a Jinja2 loader, for the core's Renderer."""

from __future__ import annotations

from pathlib import Path

from jinja2 import FileSystemLoader

from mailer.core.render import Renderer


def renderer_for(templates_dir: Path) -> Renderer:
    """A Renderer over `templates_dir` (templates/email in the program folder)."""
    return Renderer(FileSystemLoader(str(templates_dir)))
