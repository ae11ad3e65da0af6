"""The pytest plugin: .circ files collect one item per claim; spec errors are diagnostics, not tracebacks."""

HEADER = 'spec demo "plugin test"\nmodel "py-sparse-small"\ntask closing_quote\nablate mean over task\n'
BODY = """group head = blocks.1.attn.hook_z[head=1, *]
group head_v = blocks.1.attn.hook_v[head=1, *]
group head_q = blocks.1.attn.hook_q[head=1, *]
group head_k = blocks.1.attn.hook_k[head=1, *]
node reader = blocks.1.attn.hook_z[head=1, 19]
claim needed: necessary faithfulness <= 0.3
claim impossible: reader > 100
"""
ARGS = ("--circuitspec-samples", "30", "--circuitspec-baselines", "10", "-p", "no:cacheprovider")


def test_each_claim_is_an_item_with_its_verdict(pytester):
    pytester.makefile(".circ", demo=HEADER + BODY)
    result = pytester.runpytest("-v", *ARGS)
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*demo:10 needed PASSED*", "*demo:11 impossible FAILED*",
                                 "*fail: claim impossible: reader > 100*", "*counterexample:*"])
    assert "Traceback" not in result.stdout.str()


def test_k_selects_claims_and_junit_lists_them(pytester):
    pytester.makefile(".circ", demo=HEADER + BODY)
    result = pytester.runpytest("-k", "needed", "--junitxml=out.xml", *ARGS)
    result.assert_outcomes(passed=1, deselected=1)
    assert 'name="demo:10 needed"' in (pytester.path / "out.xml").read_text()


def test_spec_errors_show_diagnostics(pytester):
    pytester.makefile(".circ", broken=HEADER + "node n = blocks.0.mlp.hook_post[999]\nclaim sufficient faithfulness >= 0.9\n")
    result = pytester.runpytest(*ARGS)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*error[[]E504[]]: channel 999 is out of range*", "*hint: valid channels: 0..511*"])
    assert "Traceback" not in result.stdout.str()


def test_library_files_collect_nothing(pytester):
    pytester.makefile(".circ", lib="group head = blocks.1.attn.hook_z[head=1, *]\n")
    result = pytester.runpytest(*ARGS)
    assert result.ret == 5  # pytest: no tests collected


def test_xdist_workers_run_the_same_items_with_the_same_verdicts(pytester):
    """`pytest -n 2` (pytest-xdist): every worker collects the same items, and the outcomes and the
    failure report (statistic, counterexample) are those of a serial run."""
    pytester.makefile(".circ", demo=HEADER + BODY)
    parallel = pytester.runpytest_subprocess("-n", "2", "-v", *ARGS)
    parallel.assert_outcomes(passed=1, failed=1)
    for line in ("*gw* PASSED demo.circ::demo:10 needed*", "*gw* FAILED demo.circ::demo:11 impossible*"):
        parallel.stdout.fnmatch_lines([line])
    serial = pytester.runpytest(*ARGS)
    report = {line.strip() for line in serial.stdout.lines if line.strip().startswith(("statistic", "counterexample"))}
    assert len(report) == 2 and all(line in parallel.stdout.str() for line in report)
    assert "Traceback" not in parallel.stdout.str()
