"""One claim's outcome and the printed table / JSON document of ``senn-ref verify``.

A claim runs ``trials`` random instances and returns a :class:`Outcome`: named checks, each a
worst value over the trials and a tolerance (pass iff ``worst <= tolerance``, or ``<`` for a
strict bound), plus optional measurements that never decide pass or fail.  The row of a claim
shows its most severe check (largest ``worst / tolerance``).  ``derivations/README.md``
("senn-ref verify").
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field


@dataclass
class Check:
    """One compared quantity: ``label``, ``worst`` value over the trials, ``tolerance``;
    ``strict`` demands ``worst < tolerance`` instead of ``<=``."""
    label: str
    worst: float
    tolerance: float
    strict: bool = False

    @property
    def passed(self) -> bool:
        if not math.isfinite(self.worst):
            return False
        return self.worst < self.tolerance if self.strict else self.worst <= self.tolerance

    @property
    def severity(self) -> float:
        """``worst / tolerance`` (inf for a non-finite worst): the row shows the largest."""
        if not math.isfinite(self.worst):
            return math.inf
        return self.worst / self.tolerance if self.tolerance > 0 else (math.inf if self.worst > 0 else 0.0)


@dataclass
class Outcome:
    """What a claim returns: the number of random instances, its checks, and measurements
    (name -> number or short text) reported beside the verdict."""
    trials: int
    checks: list = field(default_factory=list)
    measurements: dict = field(default_factory=dict)

    def add(self, label: str, values, tolerance: float, strict: bool = False) -> None:
        """Record the worst (largest) of ``values`` (one or many floats) for ``label``; a NaN
        anywhere makes the worst NaN, so the check fails."""
        vals = [float(v) for v in (values if hasattr(values, "__iter__") else [values])]
        worst = max(vals) if vals and not any(math.isnan(v) for v in vals) else math.nan
        self.checks.append(Check(label, worst, float(tolerance), strict))


def row(name: str, number: int, section: str, outcome: Outcome) -> dict:
    """The JSON row of one claim: name, number, section, trials, worst, tolerance, passed,
    check (label of the most severe check), checks (all of them) and measurements."""
    top = max(outcome.checks, key=lambda c: c.severity)
    return {"name": name, "number": number, "section": section, "trials": outcome.trials,
            "worst": top.worst, "tolerance": top.tolerance, "passed": all(c.passed for c in outcome.checks),
            "check": top.label,
            "checks": [{"label": c.label, "worst": c.worst, "tolerance": c.tolerance,
                        "strict": c.strict, "passed": c.passed} for c in outcome.checks],
            "measurements": dict(outcome.measurements)}


def _json_safe(x):
    if isinstance(x, float) and not math.isfinite(x):
        return str(x)
    if isinstance(x, dict):
        return {k: _json_safe(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_json_safe(v) for v in x]
    return x


def to_json(seed: int, rows: list, seconds: float) -> str:
    """``{"seed", "seconds", "passed", "claims": [row, ...]}`` (non-finite numbers as strings)."""
    doc = {"seed": seed, "seconds": round(seconds, 2), "passed": all(r["passed"] for r in rows),
           "claims": rows}
    return json.dumps(_json_safe(doc), indent=1)


def table(seed: int, rows: list, seconds: float) -> str:
    """The human-readable table: one line per claim, then its measurements, then a summary."""
    head = f"{'#':>2} {'claim':<16} {'derivation':<60} {'trials':>6} {'worst':>10} {'tolerance':>9}  result  (worst check)"
    lines = [f"senn-ref verify, seed {seed}", head, "-" * len(head)]
    for r in rows:
        lines.append(f"{r['number']:>2} {r['name']:<16} {r['section']:<60} {r['trials']:>6} "
                     f"{r['worst']:>10.2e} {r['tolerance']:>9.1e}  {'pass' if r['passed'] else 'FAIL':<6}  "
                     f"({r['check']})")
        for c in r["checks"]:
            if not c["passed"]:
                lines.append(f"{'':>6}FAILED: {c['label']}: {c['worst']:.3e} > {c['tolerance']:.1e}")
        for k, v in r["measurements"].items():
            lines.append(f"{'':>6}measured: {k}: {v:.4g}" if isinstance(v, float) else f"{'':>6}measured: {k}: {v}")
    bad = [r["name"] for r in rows if not r["passed"]]
    lines.append(f"{len(rows) - len(bad)} passed, {len(bad)} failed of {len(rows)} claims in {seconds:.1f} s"
                 + (f": {', '.join(bad)}" if bad else ""))
    return "\n".join(lines)
