"""pytest plugin: `pytest specs/` collects every .circ file, one test item per claim.

Registered as a ``pytest11`` entry point, so it is active wherever circuitspec is installed. Items are
named ``<spec>:<line> <claim>`` and work with ``-k``, ``-x``, ``--junitxml`` and pytest-xdist. A failing
claim shows its verdict row and counterexample; a spec with errors shows the diagnostics (one failing
item for the file), never a traceback. Library files (include-only) collect nothing.

Claims of one file that share inputs are run together once, when the first of them runs.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from .commands.check_cmd import check_file
from .lang.diagnostics import render_all
from .lang.parser import parse_spec_or_library
from .lang.resolve import ResolvedClaim, ResolvedSpec
from .verify.judge import ClaimResult, judge
from .verify.runner import GroupData, RunSettings, group_key, run_group


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("circuitspec", "verifying .circ circuit specs")
    group.addoption("--circuitspec-seed", type=int, default=0, help="seed for inputs, baselines and bootstrap")
    group.addoption("--circuitspec-samples", type=int, default=RunSettings.samples, help="inputs per claim group")
    group.addoption("--circuitspec-baselines", type=int, default=RunSettings.baselines, help="random same-size circuits")
    group.addoption("--circuitspec-partial-ablations", type=int, default=RunSettings.partial_ablations,
                    help="random partial ablations of the outside a sufficient claim must also survive (0: off)")


def pytest_configure(config: pytest.Config) -> None:
    partial = config.getoption("circuitspec_partial_ablations")
    if partial is not None and partial < 0:
        raise pytest.UsageError(f"--circuitspec-partial-ablations must be 0 (off) or more, got {partial}")


def pytest_collect_file(file_path: Path, parent: pytest.Collector):
    if file_path.suffix == ".circ":
        return CircFile.from_parent(parent, path=file_path)
    return None


class SpecError(Exception):
    """The spec does not parse or resolve: carries the rendered diagnostics."""


class ClaimNotPassed(Exception):
    def __init__(self, result: ClaimResult) -> None:
        super().__init__(result.verdict)
        self.result = result


class CircFile(pytest.File):
    def collect(self):
        if parse_spec_or_library(self.path)[1]:
            return
        resolved, diagnostics, sources = check_file(self.path)
        if resolved is None:
            yield CircSpecErrors.from_parent(self, name=self.path.name, text=render_all(diagnostics, sources))
            return
        self.resolved = resolved
        self.groups: dict[tuple, GroupData] = {}
        for claim in resolved.claims:
            label = claim.claim.label or claim.kind
            yield CircClaim.from_parent(self, name=f"{resolved.spec.name}:{claim.claim.span.line} {label}", claim=claim)

    def settings(self) -> RunSettings:
        opt = self.config.getoption
        return RunSettings(seed=opt("circuitspec_seed"), samples=opt("circuitspec_samples"),
                           baselines=opt("circuitspec_baselines"), partial_ablations=opt("circuitspec_partial_ablations"))

    def group_data(self, claim: ResolvedClaim) -> GroupData:
        key = group_key(claim)
        if key not in self.groups:
            members = [c for c in self.resolved.claims if group_key(c) == key]
            self.groups[key] = run_group(self.resolved, members, self.settings())
        return self.groups[key]


class CircSpecErrors(pytest.Item):
    def __init__(self, *, text: str, **kwargs) -> None:
        super().__init__(**kwargs)
        self.text = text

    def runtest(self) -> None:
        raise SpecError(self.text)

    def repr_failure(self, excinfo, style=None) -> str:
        if isinstance(excinfo.value, SpecError):
            return str(excinfo.value)
        return super().repr_failure(excinfo, style)

    def reportinfo(self):
        return self.path, 0, f"{self.path.name}: spec errors"


class CircClaim(pytest.Item):
    def __init__(self, *, claim: ResolvedClaim, **kwargs) -> None:
        super().__init__(**kwargs)
        self.claim = claim

    def runtest(self) -> None:
        parent: CircFile = self.parent  # type: ignore[assignment]
        resolved: ResolvedSpec = parent.resolved
        result = judge(resolved, self.claim, parent.group_data(self.claim), parent.settings())
        self.user_properties.append(("verdict", result.verdict))
        if result.verdict != "pass":
            raise ClaimNotPassed(result)

    def repr_failure(self, excinfo, style=None) -> str:
        if not isinstance(excinfo.value, ClaimNotPassed):
            return super().repr_failure(excinfo, style)
        r = excinfo.value.result
        ci = "" if not r.ci else f" [{r.ci[0]:.3g}, {r.ci[1]:.3g}]"
        stat = "—" if r.statistic is None else f"{r.statistic:.3g}"
        lines = [f"{r.file}:{r.line}: {r.verdict}: {r.text}",
                 f"  statistic {stat}{ci} (threshold {r.op} {r.threshold}), ablation {r.ablation}, "
                 f"metric {r.metric}, n {r.n}, seed {r.seed}"]
        if r.note:
            lines.append(f"  {r.note}")
        if r.counterexample:
            lines.append(f"  counterexample: {r.counterexample['input']!r}")
        return "\n".join(lines)

    def reportinfo(self):
        return self.path, self.claim.claim.span.line - 1, self.name
