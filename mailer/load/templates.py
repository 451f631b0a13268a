"""The program's templates folder: a Jinja2 loader for the core's Renderer, and which files each step needs."""

from __future__ import annotations

from pathlib import Path

from jinja2 import FileSystemLoader

from mailer.core.render import Renderer


def renderer_for(templates_dir: Path) -> Renderer:
    """A Renderer over `templates_dir` (templates/email in the program folder)."""
    return Renderer(FileSystemLoader(str(templates_dir)))


def step_template_problems(templates_dir: Path, template: str) -> list[str]:
    """What is wrong with the files of the step template `template`: a step is either one Markdown file
    `T.md.j2` or the pair `T.txt.j2` and `T.html.j2`, never both kinds and never neither."""
    def shown(ext: str) -> str:
        return f"templates/email/{template}.{ext}"

    have = {ext for ext in ("txt.j2", "html.j2", "md.j2") if (templates_dir / f"{template}.{ext}").is_file()}
    pair = have & {"txt.j2", "html.j2"}
    if "md.j2" in have and pair:
        both = " and ".join(shown(ext) for ext in ("txt.j2", "html.j2") if ext in pair)
        return [f"{shown('md.j2')} and {both} both exist: keep the Markdown file or the pair, not both"]
    if "md.j2" in have:
        return []
    if not pair:
        return [f"{shown('txt.j2')} does not exist, nor {template}.html.j2 or {template}.md.j2: a step needs "
                f"one Markdown file {template}.md.j2, or the pair {template}.txt.j2 and {template}.html.j2"]
    return [f"{shown(ext)} does not exist" for ext in ("txt.j2", "html.j2") if ext not in pair]
