"""The notebook API: load a spec (a file, or text written in a cell), verify and falsify it, and look at
the results and the circuit inline.

    import circuitspec
    spec = circuitspec.load_spec("specs/closing_quote.circ")
    spec.verify()            # a table of verdicts (HTML in Jupyter, text elsewhere)
    spec.falsify()           # what the search and the ablation attacks found
    spec.picture()           # the circuit, drawn as `circuitspec show` draws it
    circuitspec.scan("call_arity", model="py-sparse-medium")  # knockouts, as `circuitspec scan`

The commands' own functions do the work (verify_spec, falsify_spec, the show pipeline); this module only
binds them to one spec and gives their results a ``_repr_html_``. Errors in the spec raise
``SpecLoadError`` with the rendered diagnostics (file:line:col, caret and hint), as on the command line.
"""

from __future__ import annotations

import html
from abc import abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

from .engine.discover import circuit_edge_count
from .engine.tasks import get_task
from .engine.zoo import DEFAULT_MODEL
from .engine.tasks.project import load_project_tasks
from .lang.diagnostics import render_all
from .lang.parser import parse_spec
from .lang.resolve import ResolvedSpec, resolve
from .testing import LoadedSpec, SpecLoadError
from .verify.example_store import ExampleStore
from .verify.falsify import FalsifyResult, falsify_spec
from .verify.judge import ClaimResult
from .verify.runner import RunSettings
from .verify.scan import ScanResult, UnitResult, knockout_scan
from .verify.verifier import verify_spec

#: The name a spec given as text is known by in diagnostics, in the folder its includes are read from.
TEXT_NAME = "<spec>.circ"


def load_spec(source: str | Path, *, base: str | Path | None = None) -> "Spec":
    """A spec from a file (a ``Path``, or a string naming an existing ``.circ`` file) or from its text (any
    other string). Includes in a spec given as text are read relative to ``base`` (default: the working
    directory), as if the text were a file there."""
    path = Path(source) if isinstance(source, Path) or _names_a_file(source) else None
    if path is not None:
        text, name = path.read_text(encoding="utf-8"), str(path)
        folder = path.parent
    else:
        folder = Path(base) if base is not None else Path.cwd()
        text, name = str(source), str(folder / TEXT_NAME)
    parsed = parse_spec(text, name)
    if not parsed.ok or parsed.spec is None:
        raise SpecLoadError(render_all(parsed.diagnostics, parsed.sources))
    load_project_tasks(folder)  # [tool.circuitspec] tasks of the nearest pyproject.toml, as the commands do
    resolved, diagnostics = resolve(parsed.spec, name)
    errors = [d for d in diagnostics if d.is_error]
    if resolved is None or errors:
        raise SpecLoadError(render_all(parsed.diagnostics + diagnostics, {**parsed.sources, name: text}))
    return Spec(resolved, [d for d in parsed.diagnostics + diagnostics if not d.is_error])


def _names_a_file(source: str) -> bool:
    return "\n" not in source and source.endswith(".circ") and Path(source).is_file()


@dataclass
class Spec:
    """One resolved spec, with its warnings (``check``'s W-codes)."""

    resolved: ResolvedSpec
    warnings: list

    @property
    def name(self) -> str:
        return self.resolved.spec.name or Path(self.resolved.file).stem

    def verify(self, *, seed: int = 0, samples: int = 100, baselines: int = 50, partial_ablations: int = 8,
               device: str = "cpu") -> "Verdicts":
        """Every claim judged as ``circuitspec verify`` judges it, with the same settings and defaults."""
        settings = RunSettings(seed=seed, samples=samples, baselines=baselines, partial_ablations=partial_ablations,
                               device=device)
        return Verdicts(verify_spec(self.resolved, settings))

    def falsify(self, *, max_examples: int = 200, seed: int = 0, samples: int = 100,
                database: str | Path | None = None) -> "Falsifications":
        """The search and the ablation attacks of ``circuitspec falsify``; counterexamples are stored under
        ``database`` only when one is given (a notebook is not a CI checkout)."""
        store = ExampleStore(Path(database)) if database is not None else None
        loaded = LoadedSpec(self.resolved, RunSettings(seed=seed, samples=samples))
        return Falsifications(falsify_spec(loaded, max_examples, seed, store))

    def picture(self, *, samples: int = 200, seed: int = 0) -> "Picture":
        """The circuit drawn as ``circuitspec show`` draws it (an SVG, shown inline in Jupyter)."""
        from .show import ShowOptions, build_picture, lay_out, render_svg

        layout = lay_out(build_picture(self.resolved, ShowOptions(samples=samples, seed=seed)))
        return Picture(render_svg(layout))

    def _repr_html_(self) -> str:
        r = self.resolved
        rows = "".join(f"<tr><td>{html.escape(c.claim.name)}</td><td>{html.escape(c.kind)}</td></tr>" for c in r.claims)
        edges = circuit_edge_count(r.mask, r.context.model)
        return (f"<p><b>{html.escape(self.name)}</b>: model {html.escape(str(r.spec.model))}, task {html.escape(r.task.name)}; "
                f"{len(r.nodes):,} nodes, {edges:,} edges</p><table><tr><th>claim</th><th>kind</th></tr>{rows}</table>")


_COLOURS = {"pass": "#1a7f37", "survived": "#1a7f37", "fail": "#cf222e", "falsified": "#cf222e",
            "inconclusive": "#9a6700"}


def _cell(value) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.3g}"
    return html.escape(str(value))


class _Rows(Sequence):
    """A list of results that shows itself as a table."""

    columns: tuple[str, ...] = ()
    ok_verdicts: frozenset[str] = frozenset()

    def __init__(self, items: list) -> None:
        self.items = items

    def __getitem__(self, i):
        return self.items[i]

    def __len__(self) -> int:
        return len(self.items)

    def __iter__(self) -> Iterator:
        return iter(self.items)

    @property
    def ok(self) -> bool:
        """Whether every result is one CI would let through (exit 0)."""
        return all(r.verdict in self.ok_verdicts for r in self.items)

    @abstractmethod
    def row(self, r) -> list:
        """The table cells of one result, in the order of ``columns``."""

    def _repr_html_(self) -> str:
        rows = []
        for r in self.items:
            cells = [_cell(v) for v in self.row(r)]
            cells[1] = f'<span style="color:{_COLOURS.get(r.verdict, "inherit")}">{cells[1]}</span>'
            rows.append(cells)
        return _html_table(self.columns, rows)

    def __repr__(self) -> str:
        return _text_table(self.columns, [self.row(r) for r in self.items])


def _html_table(columns: Sequence[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{c}</th>" for c in columns)
    body = ["<tr>" + "".join(f"<td style='text-align:left'>{c}</td>" for c in cells) + "</tr>" for cells in rows]
    return f"<table><tr>{head}</tr>{''.join(body)}</table>"


def _text_table(columns: Sequence[str], rows: list[list]) -> str:
    lines = [" | ".join(columns)]
    lines += [" | ".join("" if v is None else (f"{v:.3g}" if isinstance(v, float) else str(v)) for v in row) for row in rows]
    return "\n".join(lines)


class Verdicts(_Rows):
    """``verify``'s results (:class:`~circuitspec.verify.judge.ClaimResult`), one per claim."""

    columns = ("claim", "verdict", "statistic", "low", "high", "threshold", "n", "note")
    ok_verdicts = frozenset({"pass"})
    items: list[ClaimResult]

    def row(self, r: ClaimResult) -> list:
        low, high = r.ci if r.ci else (None, None)
        threshold = None if r.threshold is None else f"{r.op} {r.threshold:.3g}"
        return [f"{Path(r.file).name}:{r.line} {r.name}", r.verdict, r.statistic, low, high, threshold, r.n, r.note]

    def to_json(self) -> list[dict]:
        return [r.to_json() for r in self.items]


class Falsifications(_Rows):
    """``falsify``'s results (:class:`~circuitspec.verify.falsify.FalsifyResult`), one per claim."""

    columns = ("claim", "verdict", "tried", "counterexample", "note")
    ok_verdicts = frozenset({"survived"})
    items: list[FalsifyResult]

    def row(self, r: FalsifyResult) -> list:
        example = ""
        if r.counterexample:
            example = r.counterexample.get("input", r.counterexample.get("ablation choice", ""))
        return [f"{Path(r.file).name}:{r.line} {r.name}", r.verdict, r.tried + r.random_tried, example, r.note]

    def to_json(self) -> list[dict]:
        return [r.to_json() for r in self.items]


@dataclass
class Picture:
    """An SVG drawing; Jupyter shows it inline, ``save`` writes it."""

    svg: str

    def _repr_svg_(self) -> str:
        return self.svg

    def save(self, path: str | Path) -> None:
        Path(path).write_text(self.svg, encoding="utf-8")


class Knockouts(Sequence):
    """``scan``'s results (:class:`~circuitspec.verify.scan.UnitResult`), the knockout that hurts most first;
    ``result`` is the whole :class:`~circuitspec.verify.scan.ScanResult` (the random knockouts too)."""

    columns = ("unit", "nodes", "F without it", "low", "high", "random as low", "selector")

    def __init__(self, result: ScanResult) -> None:
        self.result = result

    def __getitem__(self, i) -> UnitResult:
        return self.result.units[i]

    def __len__(self) -> int:
        return len(self.result.units)

    def row(self, u: UnitResult) -> list:
        return [u.name, u.nodes, u.faithfulness, u.ci[0], u.ci[1],
                f"{u.random_as_low}/{u.random_count}" if u.random_count else None, u.selector]

    def _repr_html_(self) -> str:
        return _html_table(self.columns, [[_cell(v) for v in self.row(u)] for u in self])

    def __repr__(self) -> str:
        return _text_table(self.columns, [self.row(u) for u in self])


def scan(task: str, *, model: str | Path = DEFAULT_MODEL, units: str = "all", layer: str | None = None,
         chunk: int = 1, samples: int = 200, random: int = 10, seed: int = 0,
         ablation: str = "mean over task", device: str = "cpu") -> Knockouts:
    """``circuitspec scan`` in a notebook: knock out each head and MLP layer (``units``: "all", "heads",
    "mlps" or "parts"), or each channel of one hook (``layer``, ``chunk`` channels a unit), everything else
    kept, beside ``random`` random same-size knockouts. ``ablation`` is a spec's `ablate` line ("mean over
    task", "mean over corpus" or "zero"). Bad arguments raise :class:`~circuitspec.engine.errors.UsageError`
    (with a ``hint``), an unknown task or model its own error, as on the command line."""
    settings = RunSettings(seed=seed, samples=samples, device=device)
    return Knockouts(knockout_scan(str(model), get_task(task).name, ablation, settings, random, which=units,
                                   layer=layer, chunk=chunk))
