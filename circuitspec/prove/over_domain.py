"""A spec's behaviour claim proved over its task's declared domains (:mod:`.domain_proof`).

Which domains: those of the claim's task whose fixed feature values satisfy every ``when`` condition of
the claim (a condition on a feature the domain leaves free does not match: the domain would hold inputs
the claim is not about). The ablation constants are made as ``verify`` makes them for a claim group of up to
200 inputs (the task means over its 200 reference inputs drawn with the seed; zero; or the stored corpus
means), so the proof is about the circuit ``verify`` judges; the certificate records them.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from ..engine.ablation import run_conditions
from ..engine.batch import encode_for
from ..engine.tasks.domain import Domain
from ..lang import ast
from ..lang.resolve import ResolvedClaim, ResolvedSpec
from ..verify.examples import compare, sample_examples
from ..verify.runner import RunSettings, make_reference
from .domain_proof import certificate, prove_over_domain
from .intervals import CircuitWeights

REFERENCE_BATCH = 64  # inputs the reference is made for (a global mean does not depend on them)


@dataclass
class DomainResult:
    file: str
    line: int
    claim: str
    status: str  # "proved", "refuted", "unknown" or "not encodable"
    domain: dict | None = None  # Domain.to_json()
    seconds: float = 0.0
    boxes_bounded: int = 0
    proved_inputs: int = 0
    least_bound: float | None = None
    counterexample: dict | None = None
    note: str = ""
    certificate: str | None = None  # where the certificate was written


def matching_domains(resolved: ResolvedSpec, claim: ResolvedClaim) -> list[Domain]:
    conditions = claim.claim.conditions
    return [d for d in resolved.task.domains
            if all(c.feature in d.features and compare(d.features[c.feature], c.op, c.value) for c in conditions)]


def not_encodable(resolved: ResolvedSpec, claim: ResolvedClaim) -> str:
    """Why the bounds cannot cover this claim ('' when they can)."""
    cfg, model = resolved.context.cfg, resolved.context.model
    body = claim.claim.body
    if not isinstance(body, ast.BehaviourBody):
        return "only behaviour claims (logit comparisons) are proved over a domain"
    if claim.coverage is not None:
        return "a claim on a share of inputs is not proved over a domain (only `on every input`)"
    if resolved.edge_level or resolved.mask.cuts or not all(bool(t.all()) for t in resolved.mask.edges.values()):
        return "an edge-level circuit is not encoded (the bounds ablate nodes, and keep every weight between kept ones)"
    if cfg.act_topk is not None or cfg.topk_sites or cfg.act_fn != "relu" or cfg.norm_weight or cfg.bigram:
        return "the bounds cover circuitspec's own architecture (ReLU, gain-free RMSNorm, no AbsTopK or bigram table)"
    if claim.ablation is None or claim.ablation.kind == "resample" or claim.ablation.per_position:
        return f"{claim.ablation} ablation does not make removed channels constant"
    if model.tokenizer.name != "bytes":
        return f"domains are written in characters; {model.tokenizer.describe()} does not map them one to one"
    if not resolved.task.domains:
        return f"task {resolved.task.name} declares no domain"
    return ""


def _claim_direction(claim: ResolvedClaim) -> tuple[int, int | None, float, float]:
    """(a, b, sign, threshold): the claim holds when sign * (logit[a] - logit[b] or 0) > sign * threshold."""
    body: ast.BehaviourBody = claim.claim.body
    a = claim.logits[0]
    b = claim.logits[1] if len(claim.logits) > 1 else None
    threshold = 0.0 if b is not None else float(body.right)
    sign = 1.0 if body.op in (">", ">=") else -1.0
    return a, b, sign, threshold


def prove_claim_over_domains(resolved: ResolvedSpec, claim: ResolvedClaim, settings: RunSettings,
                             timeout_s: float, certificate_dir: Path | None = None,
                             only: list[str] | None = None, progress=None) -> list[DomainResult]:
    """Each matching domain (``only``: those named, when given) proved, refuted, or left unknown.
    ``progress(domain name, inputs proved, domain size)`` follows each search."""
    from ..lang.fmt import format_statement

    text, line = format_statement(claim.claim), claim.claim.span.line
    reason = not_encodable(resolved, claim)
    domains = [] if reason else matching_domains(resolved, claim)
    if only:
        domains = [d for d in domains if d.name in only]
    if not reason and not domains:
        reason = (f"no domain of task {resolved.task.name} fixes the claim's `when` features "
                  f"(its domains: {', '.join(d.name for d in resolved.task.domains)})")
    if reason:
        return [DomainResult(resolved.file, line, text, "not encodable", note=reason)]
    model = resolved.context.model
    examples = sample_examples(resolved.task, REFERENCE_BATCH, f"{settings.seed}:prove-domain")
    batch = encode_for(model, examples, resolved.task.name).to(settings.device)
    reference = make_reference(resolved, claim.ablation, claim.ablation_task, batch, settings, examples=examples)
    cw = CircuitWeights.from_model(model, resolved.mask, reference)
    a, b, sign, threshold = _claim_direction(claim)
    direction, offset = claim_margin(cw, a, b, sign, threshold)
    results = []
    for domain in domains:
        started = time.monotonic()
        boxes = [[[model.tokenizer.token_id(ch) for ch in alphabet] for alphabet in box] for box in domain.boxes()]

        def confirm(tokens: list[int]) -> float:
            t = torch.tensor([tokens], device=settings.device)
            logits = run_conditions(model, t, [resolved.mask], reference, torch.tensor([len(tokens) - 1], device=settings.device))[0, 0]
            value = float(logits[a] - (logits[b] if b is not None else threshold))
            return sign * value

        follow = None if progress is None else (lambda done, size, name=domain.name: progress(name, done, size))
        proof = prove_over_domain(cw, domain, boxes, direction, offset, started + timeout_s, confirm, follow)
        result = DomainResult(resolved.file, line, text, proof.status, domain.to_json(), proof.seconds,
                              proof.boxes_bounded, proof.proved_inputs,
                              proof.least_bound if proof.least_bound != float("inf") else None, None, proof.note)
        if proof.counterexample:
            tokens = proof.counterexample["tokens"]
            result.counterexample = {"input": model.tokenizer.decode(tokens), **proof.counterexample}
        if certificate_dir is not None:
            meta = {"spec": resolved.file, "model": resolved.context.ref, "line": line, "claim": text, "sign": sign, "threshold": threshold,
                    "model_sha256": model.weights_sha256, "ablation": str(claim.ablation),
                    "reference": f"{claim.ablation} over {claim.ablation_task or 'nothing'}, seed {settings.seed}",
                    "eps": cw.eps}
            cert = certificate(proof, cw, meta, a, b if b is not None else -1)
            certificate_dir.mkdir(parents=True, exist_ok=True)
            path = certificate_dir / f"{Path(resolved.file).stem}-line{line}-{domain.name}.json"
            path.write_text(json.dumps(cert) + "\n", encoding="utf-8")
            result.certificate = str(path)
        results.append(result)
    return results


def claim_margin(cw: CircuitWeights, a: int, b: int | None, sign: float, threshold: float) -> tuple[torch.Tensor, float]:
    """The direction and offset whose positive value is the claim: ``sign * (logit[a] - logit[b])`` or
    ``sign * (logit[a] - threshold)``, as a linear form of the final norm's output."""
    if b is not None:
        direction, offset = cw.margin_direction(a, b)
    else:
        direction, offset = cw.W_U[:, a], float(cw.b_U[a]) - threshold
    return sign * direction, sign * offset
