"""Prose the command line prints for a person to read, wrapped at word boundaries to fit `WIDTH` columns (the
summary table's own width), each continuation indented. Tables are laid out to fit where they are formatted."""

import sys
import textwrap

WIDTH = 120


def wrap_line(line: str) -> str:
    """`line` wrapped at spaces into lines of at most `WIDTH` columns; a word longer than that (a path) stays whole."""
    if len(line) <= WIDTH:
        return line
    indent = " " * (len(line) - len(line.lstrip()) + 2)
    return textwrap.fill(line, WIDTH, subsequent_indent=indent, break_long_words=False, break_on_hyphens=False)


def say(line: str = "", file=None) -> None:
    """Print `line`, wrapped (`wrap_line`), and flush: progress lines must show while a grid trains."""
    print(wrap_line(line), file=file or sys.stdout, flush=True)
