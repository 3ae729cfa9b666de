"""User-facing errors. Every error a user can cause is a `CompilerError` that prints where it happened.

Two kinds of location exist: `SourceLoc` points at the user's model (module path and Python file:line)
and `Span` points into a text file waferc reads (WKL, IR, target TOML) with line and column.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class SourceLoc:
    """Where an IR op came from in the user's model."""

    module: str = ""  # e.g. "model.layers.3.self_attn.q_proj"
    file: str = ""
    line: int = 0

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.file else "<unknown source>"
        return f"{self.module or '<top>'} ({where})"

    def excerpt(self) -> str:
        """The user's source line, if the file is readable."""
        try:
            text = Path(self.file).read_text().splitlines()[self.line - 1]
        except (OSError, IndexError, ValueError):
            return ""
        return text.rstrip()


@dataclass(frozen=True)
class Span:
    """A position in a text file: 1-based line and column."""

    file: str
    line: int
    col: int
    text: str = ""  # the whole source line, for the caret excerpt

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.col}"

    def excerpt(self) -> str:
        if not self.text:
            return ""
        return f"    {self.text}\n    {' ' * (self.col - 1)}^"


class CompilerError(Exception):
    """Base class of every error a user can cause. `str()` is the complete message."""

    def __init__(self, message: str, loc: SourceLoc | Span | None = None, hint: str = ""):
        self.message = message
        self.loc = loc
        self.hint = hint
        super().__init__(self.render())

    def render(self) -> str:
        if isinstance(self.loc, Span):
            out = f"{self.loc}: error: {self.message}"
            if self.loc.excerpt():
                out += "\n" + self.loc.excerpt()
        elif isinstance(self.loc, SourceLoc) and (self.loc.module or self.loc.file):
            out = f"error: {self.message}\n  in {self.loc}"
            line = self.loc.excerpt()
            if line:
                out += f"\n    {line.strip()}"
        else:
            out = f"error: {self.message}"
        if self.hint:
            out += f"\n  hint: {self.hint}"
        return out


class UnsupportedOpError(CompilerError):
    """The model uses an operation waferc cannot lower."""


class ParseError(CompilerError):
    """Malformed text: WKL, printed IR or a target file."""


class VerifyError(CompilerError):
    """A structurally invalid IR graph or WKL program."""


class TargetError(CompilerError):
    """A target description that is missing, malformed or impossible."""


class PlacementError(CompilerError):
    """The kernels cannot be placed on the wafers given (e.g. the model does not fit)."""


class WaferCapacityError(PlacementError):
    """The kernels do not fit on one wafer together, though each fits alone: more wafers may
    hold them."""


class ArtifactError(CompilerError):
    """A compiled artifact directory that is missing, partial or tampered with."""


class SimulationError(CompilerError):
    """The simulator found the program doing something impossible at run time."""


class DefectError(CompilerError):
    """A defect map that is malformed, out of range, or leaves no usable fabric."""


def span_at(file: str, source: str, line: int, col: int) -> Span:
    """A Span with the source line filled in for the caret excerpt."""
    lines = source.split("\n")
    text = lines[line - 1] if 0 < line <= len(lines) else ""
    return Span(file, line, col, text)
