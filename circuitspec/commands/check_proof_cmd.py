"""Re-verify a domain proof's certificate (written by ``circuitspec prove --certificate DIR``) with the
independent checker (circuitspec.prove.certificate_check): the weights' hash, the roots against the
domain, the tree's partition of the domain, and every proved box's lower bound recomputed from the
weights. Exit 0: the certificate proves its claim; 1: a check failed (each problem is printed); 2: bad
arguments or an unreadable certificate; 3: the model cannot be loaded."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from rich.markup import escape

from .reporting import Reporter

REQUIRED = ("format", "model", "model_sha256", "claim", "claim_tokens", "domain", "nodes", "roots", "kept", "constants")
NAME, HELP = "check-proof", "re-verify a domain proof's certificate independently of the prover"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("certificates", nargs="+", metavar="CERT", type=Path, help="certificate files (JSON) from `prove --certificate`")
    p.add_argument("--model", metavar="MODEL", help="the model to check against (default: the one the certificate names)")


def run(args: argparse.Namespace) -> int:
    from ..engine.zoo import ModelError
    from ..prove.certificate_check import check_certificate, load_weights, read_certificate

    report = Reporter(args)
    exit_code = 0
    for path in args.certificates:
        try:
            cert = read_certificate(path)
            missing = [key for key in REQUIRED if not isinstance(cert, dict) or key not in cert]
            if missing:
                raise ValueError(f"no {', '.join(repr(k) for k in missing)}: not a certificate written by "
                                 "`circuitspec prove --certificate`")
            ref = args.model or cert["model"]
        except (OSError, UnicodeDecodeError, json.JSONDecodeError, ValueError) as err:
            report.err.print("[red]error[/]: " + escape(f"{path}: not a readable certificate ({err})"), soft_wrap=True)
            exit_code = max(exit_code, 2)
            continue
        try:
            weights, digest = load_weights(ref)
        except (ModelError, OSError, ValueError) as err:
            report.err.print("[red]error[/]: " + escape(f"{path}: cannot load model {ref!r}: {err}"), soft_wrap=True)
            exit_code = max(exit_code, 3)
            continue
        with report.status(f"{path.name}: recomputing {len(cert.get('nodes', []))} boxes"):
            try:
                result = check_certificate(cert, weights, digest)
            except (KeyError, TypeError, ValueError, IndexError) as err:
                report.err.print("[red]error[/]: " + escape(f"{path}: malformed certificate ({type(err).__name__}: {err})"), soft_wrap=True)
                exit_code = max(exit_code, 2)
                continue
        domain = cert["domain"]
        if result.ok:
            report.summary(f"[green]valid[/] {escape(str(path))}: {escape(cert['claim'])} over {escape(domain['name'])} "
                          f"({domain['size']:,} inputs; {result.nodes:,} boxes re-bounded, least bound {result.least_bound:.3g})",
                          soft_wrap=True)
        else:
            exit_code = max(exit_code, 1)
            report.summary(f"[red]invalid[/] {escape(str(path))}: {len(result.problems)} problems", soft_wrap=True)
            for problem in result.problems[:20]:
                report.result(escape(f"  {problem}"), soft_wrap=True)
    return exit_code
