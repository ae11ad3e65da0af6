"""engine/memory.py: the command line keeps freed tensor memory in the process (glibc), so repeated
forward passes stop faulting pages in; ``CIRCUITSPEC_MALLOC=default`` leaves the allocator alone. Each
check runs in a fresh interpreter: the setting is per process and cannot be taken back."""

import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt: Linux only")

FAULTS_PER_FORWARD = """
import resource, sys, torch
from circuitspec.engine.memory import keep_freed_memory
from circuitspec.engine.zoo import load_model
applied = keep_freed_memory()
torch.set_num_threads(1)
model = load_model("py-sparse-small").eval()
tokens = torch.randint(0, 128, (40, 48), generator=torch.Generator().manual_seed(0))
at = torch.full((40,), 47)
with torch.no_grad():
    for _ in range(5):
        model(tokens, at)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(20):
        model(tokens, at)
print(applied, (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 20)
"""


def run(code: str, **env: str) -> str:
    done = subprocess.run([sys.executable, "-c", code], env={**os.environ, **env}, capture_output=True, text=True,
                          check=True)
    return done.stdout.strip().splitlines()[-1]


def glibc() -> bool:
    return os.confstr("CS_GNU_LIBC_VERSION").startswith("glibc") if hasattr(os, "confstr") else False


@pytest.mark.skipif(not glibc(), reason="needs glibc")
def test_forward_passes_fault_no_pages_in_once_the_memory_is_kept():
    applied, faults = run(FAULTS_PER_FORWARD, CIRCUITSPEC_MALLOC="").split()
    assert applied == "True"
    # glibc's defaults fault about 2,000 pages in per pass of this shape (measured: benchmarks/page_faults.py)
    assert float(faults) < 400


def test_the_opt_out_leaves_the_allocator_alone():
    applied, _ = run(FAULTS_PER_FORWARD, CIRCUITSPEC_MALLOC="default").split()
    assert applied == "False"


@pytest.mark.skipif(not glibc(), reason="needs glibc")
def test_the_command_line_applies_it():
    code = ("import contextlib, io, circuitspec.engine.memory as memory\n"
            "from circuitspec.cli import main\n"
            "with contextlib.redirect_stdout(io.StringIO()):\n"
            "    main(['tasks'])\n"
            "print(memory._applied)")
    assert run(code, CIRCUITSPEC_MALLOC="") == "True"
    assert run(code, CIRCUITSPEC_MALLOC="default") == "False"
