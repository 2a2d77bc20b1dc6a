"""``SENNLog``: the record of every decision and measurement of a SENN run.

* ``events``: one dict per scored proposal (every round, every layer and kind): step, round,
  kind ("width" | "depth" | "prune"), layer, lower bound, gain that drove the decision, eta_c,
  lambda, the thresholds, accepted or rejected, and the architecture after the decision;
* ``rounds``: one dict per expansion round: step, number of additions, the rate bound
  ``1 + ln(1/alpha_rel)/ln(1 + tau)`` next to it, lambda, eta before and after, seconds;
* ``history``: loss (and accuracy) on the training and validation data every
  ``history_every`` steps, with the widths and parameter count at that step;
* ``timing``: seconds spent training, scoring and searching, and in total.

``to_json(path)`` writes all of it atomically (temporary file, then rename);
``SENNLog.from_json(path)`` reads it back.  ``derivations/21-trainer.md``.
"""
from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field

import numpy as np

from ..checkpoint import atomic_write

FORMAT = "senn-ref-log/1"


def _plain(x):
    """JSON-safe copy: numpy scalars/arrays to Python, non-finite floats to strings."""
    if isinstance(x, dict):
        return {str(k): _plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_plain(v) for v in x]
    if isinstance(x, np.ndarray):
        return [_plain(v) for v in x.tolist()]
    if isinstance(x, (np.bool_, bool)):
        return bool(x)
    if isinstance(x, (np.integer,)):
        return int(x)
    if isinstance(x, (float, np.floating)):
        x = float(x)
        return x if math.isfinite(x) else repr(x)
    return x


def _check_path(path):
    """``path`` must be a str or os.PathLike; TypeError naming ``path`` otherwise."""
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path: expected a file path (str or os.PathLike), got {type(path).__name__}")
    return path


@dataclass
class SENNLog:
    """See the module docstring."""
    config: dict = field(default_factory=dict)
    events: list = field(default_factory=list)
    rounds: list = field(default_factory=list)
    history: list = field(default_factory=list)
    timing: dict = field(default_factory=lambda: {"train": 0.0, "score": 0.0, "search": 0.0, "total": 0.0})
    final: dict = field(default_factory=dict)

    @property
    def accepted(self) -> list:
        """The accepted events, in order."""
        return [e for e in self.events if e.get("accepted")]

    def count(self, kind: str | None = None, accepted: bool = True) -> int:
        """Number of accepted (or rejected) events of a kind (None = any)."""
        return sum(1 for e in self.events if bool(e.get("accepted")) == accepted
                   and (kind is None or e.get("kind") == kind))

    def rate_bound_violations(self) -> int:
        """Rounds whose number of additions reached the rate bound (0 under the exact Fisher)."""
        return sum(1 for r in self.rounds if r["additions"] >= r["rate_bound"])

    def to_dict(self) -> dict:
        return _plain({"format": FORMAT, "config": self.config, "events": self.events,
                       "rounds": self.rounds, "history": self.history, "timing": self.timing,
                       "final": self.final})

    def to_json(self, path) -> str:
        """Write the log as JSON to ``path`` atomically (``checkpoint.atomic_write``: temporary
        file, fsync, rename, fsync of the folder); returns the path."""
        _check_path(path)
        data = self.to_dict()
        return atomic_write(os.fspath(path), lambda fh: json.dump(data, fh, indent=1), binary=False,
                            suffix=".json.tmp")

    @classmethod
    def from_json(cls, path) -> "SENNLog":
        """Read a log written by :meth:`to_json` (ValueError naming the file if it is not one)."""
        path = os.fspath(_check_path(path))
        try:
            with open(path) as fh:
                d = json.load(fh)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path}: not a senn-ref log (invalid JSON: {exc})") from exc
        if not isinstance(d, dict) or d.get("format") != FORMAT:
            raise ValueError(f"{path}: not a senn-ref log (format {d.get('format') if isinstance(d, dict) else None!r}, "
                             f"expected {FORMAT!r})")
        return cls(d["config"], d["events"], d["rounds"], d["history"], d["timing"], d.get("final", {}))
