"""WKL, the wafer kernel language: printer, parser and checker (the text form is LANGUAGE.md)."""
from backends.wkl.check import check_kernel, check_program
from backends.wkl.emit import emit_kernel, emit_layout, emit_program, kernel_file
from backends.wkl.parse import parse_kernel, parse_layout, parse_program, strip_spans

__all__ = ["check_kernel", "check_program", "emit_kernel", "emit_layout", "emit_program",
           "kernel_file", "parse_kernel", "parse_layout", "parse_program", "strip_spans"]
