"""`circuitspec completion SHELL`: a script generated from the real parser that the shell can load."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from circuitspec.cli import COMMANDS, main
from circuitspec.commands.completion_cmd import script


def _complete(tmp_path, words: list[str]) -> list[str]:
    """What bash's completion function offers for the last (possibly empty) word of ``words``."""
    path = tmp_path / "c.bash"
    path.write_text(script("bash"))
    line = " ".join(words)
    program = (f"source {path}; COMP_WORDS=({' '.join(repr(w) for w in words)}); COMP_CWORD={len(words) - 1}; "
               f"COMP_LINE={line!r}; COMP_POINT=${{#COMP_LINE}}; _shtab_circuitspec; printf '%s\\n' \"${{COMPREPLY[@]}}\"")
    out = subprocess.run(["bash", "-c", program], capture_output=True, text=True, check=True, cwd=tmp_path).stdout
    return [w for w in out.splitlines() if w]


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_bash_completes_commands_options_choices_and_paths(tmp_path):
    assert set(_complete(tmp_path, ["circuitspec", ""])) >= {c.NAME for c in COMMANDS}
    assert _complete(tmp_path, ["circuitspec", "disc"]) == ["discover"]
    assert "--falsify" in _complete(tmp_path, ["circuitspec", "verify", "--fal"])
    assert set(_complete(tmp_path, ["circuitspec", "discover", "--task", "x", "--ablation", ""])) == {"mean", "zero"}
    (tmp_path / "quote.circ").write_text("")
    assert "quote.circ" in _complete(tmp_path, ["circuitspec", "verify", "quo"])


def test_every_shell_gets_a_script_and_an_unknown_one_is_a_usage_error(capsys):
    for shell in ("bash", "zsh", "tcsh"):
        assert main(["completion", shell]) == 0
        assert "circuitspec" in capsys.readouterr().out
    with pytest.raises(SystemExit) as stop:
        main(["completion", "fish"])
    assert stop.value.code == 2
