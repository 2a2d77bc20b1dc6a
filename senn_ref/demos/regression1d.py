"""regression1d: the paper's Figure-2 experiment with growth (senn-math section 10).

Task ``datasets.teacher_regression(seed)``: a random rational MLP [1, 16, 16, 16, 16, 1] as
target, x ~ N(0, 1), 50 training / 1000 test points; MSE, full batch.  Start ``mlp([1, 1, 1])``
(rational, one unit).  Settings: the trainer's defaults, which are the paper's for this task
(NGD-CG lr 0.1 damping 0.1, 2000 steps, a round every 30 steps, tau 1, alpha_rel 2.5e-3); no
field is changed.  Figure ``figure2.png``: fit vs target vs samples with the units' locations
(vertical lines) and below it the landscape of Delta eta'/eta_c over (p, q) (``landscape.py``)
before and after the 4th addition, before the 5th, and at the end.
"""
from __future__ import annotations

import numpy as np

from .. import losses
from ..architectures import mlp
from ..datasets import teacher_regression
from ..trainer import SENNConfig
from .landscape import LOG10_Q_RANGE, P_RANGE, landscape, unit_locations
from .task import Task

NAME = "regression1d"
SUMMARY = "Figure 2: 1-D regression from 1 rational unit, with the (p, q) gain landscape"
OPTIONS = {}
PANELS = ("before the 4th addition", "after the 4th addition", "before the 5th addition", "end")


def task(seed: int = 0, quick: bool = False) -> Task:
    """The Figure-2 task (module docstring)."""
    X, Y, Xt, Yt, teacher = teacher_regression(seed=seed)
    return Task(X, Y, Xt, Yt, losses.mse(), False,
                start=lambda: mlp([1, 1, 1], activation="rational", seed=seed),
                build=lambda widths: mlp([1, *widths, 1], activation="rational", seed=seed),
                config=SENNConfig(steps=2000), quick_steps=300,
                config_notes={"(none)": "the trainer's defaults are the paper's 1-D settings"},
                fixed_widths=(1, 2, 4, 8, 16, 32),
                info={"teacher": "rational MLP [1,16,16,16,16,1]", "n_train": 50, "n_test": 1000},
                objects={"teacher": teacher})


def make_callback(task, config):
    """Keep copies of the network for the Figure-2 panels.  A round runs before the step whose
    index is a multiple of ``expand_every`` and the callback sees the state after that step,
    so "before" is the state entering the round and "after" is one optimiser step after it.
    The copies are saved with run checkpoints (``state_dict``), so a resumed run draws the same
    panels (derivations/22-run-checkpoints.md section 4)."""
    callback = Figure2Snapshots(config)
    return callback, callback.extra


class Figure2Snapshots:
    """The callback of :func:`make_callback`; ``extra["snapshots"]`` maps panel -> (net, step)."""

    def __init__(self, config):
        self.config, self.extra, self.pre, self.count = config, {"snapshots": {}}, None, 0

    def __call__(self, step, net, log):
        n = log.count("width")
        if n != self.count:
            if self.count < 4 <= n:
                self.extra["snapshots"][PANELS[0]] = self.pre
                self.extra["snapshots"][PANELS[1]] = (net.copy(), step + 1)
            if self.count < 5 <= n:
                self.extra["snapshots"][PANELS[2]] = self.pre
            self.count = n
        if (step + 1) % self.config.expand_every == 0:
            self.pre = (net.copy(), step + 1)
        return False

    def state_dict(self) -> dict:
        kept = dict(self.extra["snapshots"], **({"pre": self.pre} if self.pre is not None else {}))
        return {"info": {"count": self.count, "steps": {k: s for k, (_, s) in kept.items()}},
                "networks": {k: net for k, (net, _) in kept.items()}}

    def load_state_dict(self, d) -> None:
        steps, nets = d["info"]["steps"], d["networks"]
        self.count = d["info"]["count"]
        self.pre = (nets["pre"], steps["pre"]) if "pre" in nets else None
        self.extra["snapshots"] = {k: (nets[k], steps[k]) for k in PANELS if k in nets}


def targets(summary) -> dict:
    """Issue 8: final test MSE at least 5x below the fixed 1-unit network's."""
    fixed = summary["baselines"].get("fixed_start", {}).get("test_mse")
    ratio = None if fixed is None else fixed / summary["final_test_mse"]
    return {"fixed_1_unit_mse_over_senn_mse": ratio, "met": None if ratio is None else bool(ratio >= 5.0)}


def figures(task, net, log, extra, config, out) -> list:
    """``figure2.png`` (module docstring); adds the landscape facts to the summary."""
    from .figures import pyplot, save
    plt = pyplot()
    teacher = task.objects["teacher"]
    snaps = dict(extra["snapshots"])
    snaps["end"] = (net, config.steps)
    panels = [k for k in PANELS if k in snaps]
    rng = np.random.default_rng(12345)
    grid = np.linspace(*P_RANGE, 400)[:, None]
    fig, axes = plt.subplots(2, len(panels), figsize=(4.2 * len(panels), 7.2), squeeze=False,
                             gridspec_kw={"height_ratios": [1, 1.2]})
    facts = {}
    for j, key in enumerate(panels):
        snap, step = snaps[key]
        ax = axes[0, j]
        ax.plot(grid[:, 0], teacher.forward(grid)[:, 0], "k-", lw=1, label="target")
        ax.plot(grid[:, 0], snap.forward(grid)[:, 0], "C3-", lw=1.5, label="fit")
        ax.plot(task.X[:, 0], task.Y[:, 0], "o", ms=3, color="C0", label="samples")
        for p in unit_locations(snap):
            if np.isfinite(p) and P_RANGE[0] <= p <= P_RANGE[1]:
                ax.axvline(p, color="C2", lw=0.8, alpha=0.7)
        width = snap.layers[0].params["W"].shape[0]
        ax.set_title(f"{key} (step {step}, {width} units)", fontsize=9)
        ax.set_xlabel("x  (green lines: unit locations p = -b/w)")
        ax.set_ylabel("y")
        ax.set_xlim(*P_RANGE)
        if j == 0:
            ax.legend(fontsize=7)
        L = landscape(snap, task.X, task.Y, task.loss, config, rng)
        ax = axes[1, j]
        im = ax.pcolormesh(L["p"], L["q"], L["ratio"], shading="auto", cmap="viridis")
        ax.contour(L["p"], L["q"], L["ratio"], levels=[config.tau], colors="w", linewidths=0.8)
        ok = np.isfinite(L["cand_p"]) & (L["cand_q"] > 0)
        for passed, color, lab in ((False, "k", "fails tau or alpha"), (True, "r", "passes tau and alpha")):
            m = ok & (L["cand_passed"] == passed)
            ax.scatter(L["cand_p"][m], L["cand_q"][m], s=10, c=color, label=f"{lab}: {int(m.sum())}")
        ax.set_yscale("log")
        ax.set_xlim(*P_RANGE)
        ax.set_ylim(10 ** LOG10_Q_RANGE[0], 10 ** LOG10_Q_RANGE[1])
        ax.set_xlabel("location p")
        ax.set_ylabel("scale q (kernel 1/q, bias -p/q)")
        act = ", ".join(f"{k}={v:.2f}" for k, v in L["act"].items())
        ax.set_title(f"Delta eta'/eta_c  (max {L['ratio'].max():.2g}; {act})", fontsize=8)
        ax.legend(fontsize=6, loc="lower left")
        fig.colorbar(im, ax=ax)
        facts[key] = {"step": step, "width": int(width), "max_ratio": float(L["ratio"].max()),
                      "eta_c": L["eta_c"], "lambda": L["lambda"], "activation": L["act"],
                      "candidates_passing": int(L["cand_passed"].sum()),
                      "candidates_negative_q": int((L["cand_q"] <= 0).sum())}
    fig.suptitle("Figure 2: fit (top) and gain landscape Delta eta'/eta_c of a new unit (bottom; white: "
                 f"tau = {config.tau}; grid activation = best optimised proposal's (v, c, l); "
                 "optimised candidates with q < 0 not shown)", fontsize=9)
    extra["summary"] = {"landscape": facts}
    return [save(fig, out, "figure2.png")]
