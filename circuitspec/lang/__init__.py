"""The .circ language, syntax layer: text -> AST with spans -> diagnostics -> canonical text.

Binding names to a model (resolution) and building masks live on top of this package; they take a
:class:`~.ast.Spec` and report problems as :class:`~.diagnostics.Diagnostic` too.

>>> result = parse_spec('spec s\\nmodel "m"\\ntask closing_quote\\nablate zero\\nclaim sufficient faithfulness >= 0.9')
>>> result.ok, result.spec.claims[0].kind
(True, 'sufficient')
"""

from . import ast
from .diagnostics import CODES, Diagnostic, render, render_all, source_lines
from .fmt import format_spec, format_statement
from .parser import ParseResult, parse_file, parse_spec

__all__ = [
    "CODES",
    "Diagnostic",
    "ParseResult",
    "ast",
    "format_spec",
    "format_statement",
    "parse_file",
    "parse_spec",
    "render",
    "render_all",
    "source_lines",
]
