"""``SENNConfig``: every setting of a SENN run, with its default and the released code's value.

Each field is documented below as ``default`` - meaning - [the released code's value where it
differs or is known].  ``SENNConfig.validate`` checks every field (type, range, option name)
and is called by :func:`senn_ref.train_senn` before anything is trained.
``derivations/21-trainer.md``; ``tests/test_trainer.py``.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from .._validate import check_flag, check_positive_int, check_scalar, check_str_option

OPTIMIZERS = ("ngd-cg", "kfac", "adam", "sgd")
GAINS = ("lower_bound", "kfac", "exact")
ETA_C = ("network", "layer")
SEARCHES = ("ascent", "langevin", "random")
METRICS = ("euclidean", "true")
SCORES = ("natural", "euclidean")
LR_SCHEDULES = ("constant", "cosine")


@dataclass
class SENNConfig:
    """Settings of :func:`senn_ref.train_senn` (see the module docstring).

    Training
      steps=2000        optimiser steps [released 1-D code: 2000]
      batch_size=None   examples per step; None = full batch [1-D: full batch; MNIST: 1024]
      optimizer="ngd-cg"  "ngd-cg" natural gradient by CG on the damped exact GGN (as the paper
                        trains), "kfac", "adam" or "sgd"
      lr=0.1            learning rate [released: 0.1 for natural gradient]
      lr_schedule="constant"  "constant": lr at every step; "cosine": lr_t = lr * (1 + cos(pi t /
                        steps)) / 2 at global step t = 0..steps-1 (never 0 inside the run; a pure
                        function of t, so resuming is unchanged); trainer/lr_schedule.py
      damping=0.1       Tikhonov damping of the training curvature [released: 0.1]
      weight_decay=0.0  L2 coefficient [released MNIST: 1e-3]
      cg_maxiter=100    CG iterations per natural-gradient step
    Growth schedule
      expand_every=30   steps between expansion rounds [released 1-D: 30]
      warmup=0          no round before this step
      recursive=True    apply the best accepted proposal, re-score, repeat until none passes
      max_additions_per_round=32  hard cap per round (the rate bound caps rounds under the exact
                        Fisher; under K-FAC scoring it can fail, so a cap guards against runaways)
      width=True        propose new units in every hidden layer
      depth=False       also propose inserted layers (off by default: on the paper's 1-D task the
                        inserted identity layers made the test MSE ~8x worse and NGD-CG ~10x
                        slower (CG at its iteration cap); derivations/21-trainer.md section 2)
      width_cooldown=0  rounds without width growth after a width addition
      depth_cooldown=1  rounds without depth growth after a depth insertion [released: layer cooldown]
      max_width=64      units per hidden layer at most [released MNIST: capacity 64]
      max_layers=4      Dense/Conv2D layers at most (hidden layers + output)
    Criterion (derivations/19-criterion.md)
      tau=1.0           relative threshold Delta eta / eta_c > tau [released 1-D: 1; MNIST 0.007]
      alpha_rel=2.5e-3  absolute threshold Delta eta > alpha_rel * lambda [released: 2.5e-3]
      depth_cost=2.0    depth scores are divided by this [released: 2 to 60 per task]
      eta_c="network"   "network": eta_c is the whole network's score (the paper's form);
                        "layer": the consuming layer's own score (the released code's form)
      gain="lower_bound"  what drives decisions: "lower_bound" the K-FAC lower bound
                        Delta eta' (default, cheap), "kfac" the exact K-FAC gain (Sigma_h form),
                        "exact" the exact gain eta(grown) - eta (small networks only; eta_c then exact too)
      score="natural"   what width proposals and eta_c are measured with: "natural" the natural
                        expansion score (everything above, the paper's); "euclidean" the GradMax-like
                        baseline: the gain is Delta_E = ||dL/dOmega||^2 of the new units' zero
                        outgoing weights (incoming vectors (W_j, b_j) at norm sqrt(2)), eta_c is
                        ||grad L||^2 of the network ("network") or of the consumer ("layer"), and
                        the absolute test is Delta_E > alpha_rel * E_0 with E_0 the network's
                        ||grad L||^2 at the start of the round (no ceiling exists).  Width only:
                        needs depth=False and gain="lower_bound" (ignored: Delta_E is exact);
                        pruning keeps its natural scores.  derivations/23-euclidean-gain.md
      score_damping=None  damping of the scores; None = ``damping``.  Undamped scores of rational
                        nets sit at ~99 % of lambda (near-null (v, c, l) scale directions), so
                        decisions need damping; see derivations/19-criterion.md section 3
      metric="euclidean"  output metric of every curvature (the paper's)
      score_batch=None  examples the scores use; None = all up to 512, a fixed random subset of 512
                        above (search cost is linear in it; derivations/21-trainer.md section 5)
    Proposal search (derivations/20-proposal-search.md)
      n_candidates=100  candidates per layer and kind [released: 100]
      search="ascent"   "ascent" (Adam on the lower bound), "langevin" (MALA) or "random"
      search_steps=20   search iterations
      search_lr=0.1     relative step of the search
      temperature=0.05  Langevin temperature relative to the median initial score
      search_batch=128  examples the search optimises on (a random subset of the scoring batch
                        per proposal); every candidate's start and end point is then re-scored on
                        the whole scoring batch, which decides.  None = the whole scoring batch
    Pruning (derivations/18-pruning-scores.md)
      prune=False       prune units whose freeze score and removal cost are both below
                        prune_tau * eta_c [released CIFAR: 3e-4]
      prune_tau=3e-4, min_width=1
    Display
      quiet=False       one-line progress on stderr unless quiet
      history_every=10  steps between full-data loss evaluations in the log
    """
    steps: int = 2000
    batch_size: int | None = None
    optimizer: str = "ngd-cg"
    lr: float = 0.1
    lr_schedule: str = "constant"
    damping: float = 0.1
    weight_decay: float = 0.0
    cg_maxiter: int = 100
    expand_every: int = 30
    warmup: int = 0
    recursive: bool = True
    max_additions_per_round: int = 32
    width: bool = True
    depth: bool = False
    width_cooldown: int = 0
    depth_cooldown: int = 1
    max_width: int = 64
    max_layers: int = 4
    tau: float = 1.0
    alpha_rel: float = 2.5e-3
    depth_cost: float = 2.0
    eta_c: str = "network"
    gain: str = "lower_bound"
    score: str = "natural"
    score_damping: float | None = None
    metric: str = "euclidean"
    score_batch: int | None = None
    n_candidates: int = 100
    search: str = "ascent"
    search_steps: int = 20
    search_lr: float = 0.1
    temperature: float = 0.05
    search_batch: int | None = 128
    prune: bool = False
    prune_tau: float = 3e-4
    min_width: int = 1
    quiet: bool = False
    history_every: int = 10

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> "SENNConfig":
        """Check every field; raises ValueError/TypeError naming the field.  Returns self.

        TypeError for a value of the wrong type (a number given as a string, a float where an
        integer is needed, anything but True/False for a flag, a non-string option), ValueError
        for a value out of range (NaN/inf included) or an unknown option string."""
        for name in ("steps", "expand_every", "max_additions_per_round", "max_width", "max_layers",
                     "n_candidates", "cg_maxiter", "history_every", "min_width"):
            check_positive_int(getattr(self, name), name)
        for name in ("warmup", "width_cooldown", "depth_cooldown", "search_steps"):
            check_positive_int(getattr(self, name), name, minimum=0)
        for name in ("batch_size", "score_batch", "search_batch"):
            if getattr(self, name) is not None:
                check_positive_int(getattr(self, name), name)
        for name in ("lr", "tau", "alpha_rel", "depth_cost", "search_lr", "temperature", "prune_tau"):
            check_scalar(getattr(self, name), name, minimum=0.0, strict=True)
        for name in ("damping", "weight_decay"):
            check_scalar(getattr(self, name), name, minimum=0.0)
        if self.score_damping is not None:
            check_scalar(self.score_damping, "score_damping", minimum=0.0)
        if self.alpha_rel > 1.0:
            raise ValueError(f"alpha_rel: must be <= 1, got {self.alpha_rel}")
        for name in ("recursive", "width", "depth", "prune", "quiet"):
            check_flag(getattr(self, name), name)
        for name, allowed in (("optimizer", OPTIMIZERS), ("gain", GAINS), ("eta_c", ETA_C),
                              ("search", SEARCHES), ("metric", METRICS), ("score", SCORES),
                              ("lr_schedule", LR_SCHEDULES)):
            check_str_option(getattr(self, name), allowed, name)
        if self.score == "euclidean" and self.depth:
            raise ValueError("score: 'euclidean' scores width proposals only; set depth=False")
        if self.score == "euclidean" and self.gain != "lower_bound":
            raise ValueError(f"score: 'euclidean' has one gain (the exact Delta_E); gain must be "
                             f"'lower_bound' (the default), got {self.gain!r}")
        if self.min_width > self.max_width:
            raise ValueError(f"min_width ({self.min_width}) exceeds max_width ({self.max_width})")
        return self

    @property
    def scoring_damping(self) -> float:
        """The damping the scores use: ``score_damping``, or ``damping`` when that is None."""
        return float(self.damping if self.score_damping is None else self.score_damping)

    def replace(self, **changes) -> "SENNConfig":
        """A validated copy with some fields changed (unknown field names are a ValueError)."""
        unknown = set(changes) - {f.name for f in dataclasses.fields(self)}
        if unknown:
            raise ValueError(f"unknown SENNConfig field(s) {sorted(unknown)}")
        return dataclasses.replace(self, **changes).validate()

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "SENNConfig":
        """Build from a dict (e.g. parsed JSON/TOML); unknown keys are a ValueError naming them."""
        if not isinstance(d, dict):
            raise TypeError(f"config: expected a dict, got {type(d).__name__}")
        return cls().replace(**d)
