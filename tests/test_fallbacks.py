"""Numerical fallbacks are never silent: each one warns and, inside train_senn, becomes a log event
(senn_ref/fallbacks.py; derivations/22-run-checkpoints.md section 5)."""
import json
import warnings

import numpy as np
import pytest

from senn_ref import losses, mlp
from senn_ref.datasets import teacher_regression
from senn_ref.fallbacks import NumericalFallback, count_fallbacks, log_fallbacks, recording, warn_fallback
from senn_ref.kfac import CurvatureWarning
from senn_ref.layers import Dense
from senn_ref.natural_gradient import CGWarning
from senn_ref.network import Network
from senn_ref.optim import NaturalGradientCG
from senn_ref.trainer import SENNConfig, SENNLog, train_senn

PLAIN = dict(width=False, depth=False, quiet=True)


def _fallbacks(log):
    return [e for e in log.events if e["kind"] == "fallback"]


def test_fallback_warnings_are_recorded_even_when_a_filter_makes_them_errors():
    assert issubclass(CGWarning, NumericalFallback) and issubclass(CurvatureWarning, NumericalFallback)
    assert issubclass(NumericalFallback, RuntimeWarning)
    with recording() as outer:
        with recording() as inner, pytest.warns(CGWarning, match="stop"):
            warn_fallback(CGWarning, "stop", "iteration cap", 0.5)
        with warnings.catch_warnings():
            warnings.simplefilter("error", CGWarning)
            with pytest.raises(CGWarning, match="again"):
                warn_fallback(CGWarning, "again", "curvature floor", 2.0)
    assert [(w.reason, w.value) for w in inner] == [("iteration cap", 0.5)]
    # every active context records (derivations/22 section 5), the enclosing one too
    assert [(w.reason, w.value) for w in outer] == [("iteration cap", 0.5), ("curvature floor", 2.0)]
    with pytest.raises(TypeError, match="category"):
        warn_fallback(UserWarning, "x", "r")


def test_a_recording_around_train_senn_sees_the_fallbacks_it_logs():
    """A caller's recording() around train_senn receives the fallbacks the trainer records and
    logs (it received none when only the innermost context recorded)."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(16, 1))
    Y = np.sin(X)
    config = SENNConfig(steps=4, quiet=True, cg_maxiter=1, width=False, depth=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NumericalFallback)
        with recording() as outer:
            _, log = train_senn(mlp([1, 2, 1], seed=0), X, Y, losses.mse(), config)
    logged = sum(e["count"] for e in _fallbacks(log))
    assert logged == 4, _fallbacks(log)
    assert len(outer) == logged and all(w.reason == "iteration cap" for w in outer), outer


def test_log_fallbacks_merges_repeats_of_consecutive_steps_only():
    ws = [CGWarning("a", "iteration cap", 0.1), CGWarning("b", "iteration cap", 0.2)]
    events = []
    assert log_fallbacks(events, ws, 3, "optimizer step") == 2
    log_fallbacks(events, [CGWarning("c", "iteration cap", 0.3)], 4, "optimizer step")
    log_fallbacks(events, [CGWarning("d", "iteration cap", 0.4)], 6, "optimizer step")       # a gap
    log_fallbacks(events, [CGWarning("e", "curvature floor", float("inf"))], 6, "optimizer step")
    log_fallbacks(events, [CurvatureWarning("f", "curvature floor", 1.0)], 6, "optimizer step")
    log_fallbacks(events, [CurvatureWarning("g", "curvature floor", 1.0)], 6, "expansion round")
    got = [(e["step"], e["last_step"], e["count"], e["warning"], e["reason"], e["during"], e["value"], e["message"])
           for e in events]
    assert got == [(3, 4, 3, "CGWarning", "iteration cap", "optimizer step", 0.3, "a"),
                   (6, 6, 1, "CGWarning", "iteration cap", "optimizer step", 0.4, "d"),
                   (6, 6, 1, "CGWarning", "curvature floor", "optimizer step", None, "e"),
                   (6, 6, 1, "CurvatureWarning", "curvature floor", "optimizer step", 1.0, "f"),
                   (6, 6, 1, "CurvatureWarning", "curvature floor", "expansion round", 1.0, "g")]
    assert count_fallbacks(events + [{"kind": "width", "accepted": True}]) == 7
    assert all(e["accepted"] is False for e in events)


@pytest.fixture
def teacher():
    X, Y, _, _, _ = teacher_regression(n_train=30, n_test=10, seed=1)
    return X, Y


def test_cg_iteration_cap_is_logged_with_the_residual_of_every_step(teacher):
    """NGD-CG with one CG iteration never reaches its tolerance: every step is a fallback, logged
    as one merged event whose value is the last step's relative residual, bit for bit the one an
    identical optimiser run by hand reports."""
    X, Y = teacher
    config = SENNConfig(steps=5, optimizer="ngd-cg", cg_maxiter=1, lr=0.1, damping=0.1, **PLAIN)
    net = mlp([1, 4, 1], seed=3)
    twin, opt = net.copy(), NaturalGradientCG(lr=0.1, damping=0.1, cg_maxiter=1)
    with pytest.warns(CGWarning, match="did not converge"):
        _, log = train_senn(net, X, Y, losses.mse(), config)
        residuals = []
        for _ in range(5):
            opt.step(twin, X, Y, losses.mse())
            residuals.append(opt.last_info.relative_residual)
    assert np.array_equal(net.get_flat(), twin.get_flat())
    (ev,) = _fallbacks(log)
    assert (ev["step"], ev["last_step"], ev["count"], ev["during"], ev["warning"], ev["reason"]) == \
        (0, 4, 5, "optimizer step", "CGWarning", "iteration cap")
    assert ev["value"] == residuals[-1] and min(residuals) > 1e-6, residuals
    assert log.final["numerical_fallbacks"] == 5


def test_cg_curvature_floor_at_zero_damping_is_logged():
    """The saturated softmax of tests/test_ngd_cg.py at zero damping: CG meets the curvature floor."""
    rng = np.random.default_rng(1800)
    d = Dense(2, 3, rng, bias_std=1.0)
    d.params["W"] = 300 * rng.standard_normal((3, 2))
    X, Y = rng.standard_normal((11, 2)), rng.integers(0, 3, 11)
    config = SENNConfig(steps=1, optimizer="ngd-cg", damping=0.0, metric="true", lr=1e-3, **PLAIN)
    with pytest.warns(CGWarning, match="floor"):
        _, log = train_senn(Network([d]), X, Y, losses.softmax_cross_entropy(), config)
    reasons = {(e["warning"], e["reason"]) for e in _fallbacks(log)}
    assert ("CGWarning", "curvature floor") in reasons, _fallbacks(log)
    assert log.final["numerical_fallbacks"] >= 1


def test_kfac_pseudo_inverse_at_zero_damping_is_logged(tmp_path):
    """K-FAC at zero damping on 3 examples: the first layer's A = [x, 1]^T [x, 1] / N is 5 x 5 of
    rank 3, so 2 of its eigenvalues are cut and pseudo-inverted - reported, logged, and in events.json."""
    rng = np.random.default_rng(0)
    X, Y = rng.standard_normal((3, 4)), rng.standard_normal((3, 1))
    config = SENNConfig(steps=2, optimizer="kfac", damping=0.0, lr=0.01, **PLAIN)
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        _, log = train_senn(mlp([4, 5, 1], seed=0), X, Y, losses.mse(), config)
    shown = [str(w.message) for w in seen if issubclass(w.category, CurvatureWarning)]
    assert any(m.startswith("dense0 A (damped): 2 of 5 eigenvalues") for m in shown), shown
    evs = [e for e in _fallbacks(log) if e["reason"] == "pseudo-inverse"]
    assert evs and evs[0]["step"] == 0 and evs[-1]["last_step"] == 1 and evs[0]["during"] == "optimizer step"
    assert sum(e["count"] for e in _fallbacks(log)) == len(seen) == log.final["numerical_fallbacks"]
    log.to_json(tmp_path / "events.json")
    assert SENNLog.from_json(tmp_path / "events.json").events == json.loads(json.dumps(log.to_dict()))["events"]


def test_kfac_inverse_recomputed_by_shrink_state_reports_its_pseudo_inverse():
    """Pruning an input of a rank-deficient factor makes KFAC.shrink_state recompute that factor's
    damped inverse; when it is pseudo-inverted it is reported as the step's refresh reports it
    (it was silent).  A = [x, 1]^T [x, 1] / 3 is 5 x 5 of rank 3; keeping 3 of 4 inputs leaves a
    4 x 4 factor of rank 3: 1 eigenvalue cut.  The untouched G keeps its inverse, no warning."""
    from senn_ref.optim import KFAC
    rng = np.random.default_rng(0)
    X, Y = rng.standard_normal((3, 4)), rng.standard_normal((3, 1))
    net, opt = mlp([4, 5, 1], seed=0), KFAC(0.01, 0.0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CurvatureWarning)
        opt.step(net, X, Y, losses.mse())
    G_inv = opt.inverses["dense0"][1]
    with warnings.catch_warnings(record=True) as seen, recording() as found:
        warnings.simplefilter("always")
        assert opt.shrink_state("dense0", None, np.array([0, 1, 3]))
    shown = [str(w.message) for w in seen if issubclass(w.category, CurvatureWarning)]
    assert shown and shown[0].startswith("dense0 A (damped): 1 of 4 eigenvalues"), shown
    assert [(w.reason, w.value) for w in found] == [("pseudo-inverse", 1.0)]
    assert opt.inverses["dense0"][1] is G_inv and opt.inverses["dense0"][0].shape == (4, 4)


@pytest.mark.parametrize("during, target", [("expansion round", "expansion_round"),
                                            ("pruning round", "pruning_round")])
def test_fallbacks_inside_rounds_are_logged_at_their_step(teacher, monkeypatch, during, target):
    """A fallback raised inside an expansion or pruning round (e.g. a CG score) is logged with the
    round's step; the round's own events come first."""
    import sys
    import senn_ref.grow.pruning_round  # noqa: F401
    module = sys.modules["senn_ref.trainer.train_senn" if target == "expansion_round" else "senn_ref.grow.pruning_round"]
    real = getattr(module, target)

    def noisy(*args, **kwargs):
        warn_fallback(CurvatureWarning, f"inside {target}", "ill-conditioned", 1e13)
        return real(*args, **kwargs)
    monkeypatch.setattr(module, target, noisy)
    X, Y = teacher
    config = SENNConfig(steps=12, expand_every=5, n_candidates=4, search_steps=2, prune=True, quiet=True)
    with pytest.warns(CurvatureWarning, match=f"inside {target}"):
        _, log = train_senn(mlp([1, 3, 1], seed=0), X, Y, losses.mse(), config)
    evs = [(e["step"], e["count"], e["during"], e["value"]) for e in _fallbacks(log)]
    assert evs == [(5, 1, during, 1e13), (10, 1, during, 1e13)]
    assert log.final["numerical_fallbacks"] == 2
    first = log.events.index(_fallbacks(log)[0])
    assert first > 0 and log.events[first - 1]["step"] == 5 and log.events[first - 1]["kind"] != "fallback"


def test_fallback_events_merged_across_a_checkpoint_resume_bit_identically(teacher, tmp_path):
    """A run stopped after its checkpoint at step 6 and resumed: the fallback event that began at
    step 5 keeps merging (steps 5-9), and the log equals the uninterrupted run's."""
    X, Y = teacher
    config = SENNConfig(steps=12, expand_every=5, n_candidates=4, search_steps=2, optimizer="ngd-cg",
                        cg_maxiter=1, quiet=True)

    class Stop(Exception):
        pass

    def stop_at_7(step, net, log):
        if step == 7:
            raise Stop
        return False

    def run(**kw):
        return train_senn(mlp([1, 3, 1], seed=0), X, Y, losses.mse(), config, seed=2, **kw)

    def comparable(log):
        d = log.to_dict()
        d.pop("timing")
        for r in d["rounds"]:
            r.pop("seconds_score"), r.pop("seconds_search")
        return d
    with pytest.warns(CGWarning):
        net_a, log_a = run()
        with pytest.raises(Stop):
            run(checkpoint_dir=tmp_path, checkpoint_every=2, callback=stop_at_7)
        net_b, log_b = run(checkpoint_dir=tmp_path, checkpoint_every=2, resume=True)
    spans = [(e["step"], e["last_step"], e["count"]) for e in _fallbacks(log_a)]
    assert spans == [(0, 4, 5), (5, 9, 5), (10, 11, 2)], spans
    assert log_a.final["numerical_fallbacks"] == 12
    assert np.array_equal(net_a.get_flat(), net_b.get_flat()) and comparable(log_a) == comparable(log_b)


def test_kfac_padding_at_zero_damping_reports_its_pseudo_inverse():
    """Growth pads K-FAC's stored inverses: a new row's diagonal is 1 / (mean factor diagonal +
    damping shift), and 0 when that is 0 (zero damping, all-zero factor).  Here dense1's weights
    are 0, so dense0's output gradients, its G and the rational unit blocks are all 0: the two new
    rows of G^-1 and the new units' blocks are pseudo-inverted - reported (it was silent)."""
    from senn_ref.grow import add_neurons
    from senn_ref.optim import KFAC
    rng = np.random.default_rng(0)
    X, Y = rng.standard_normal((6, 4)), rng.standard_normal((6, 1))
    net, opt = mlp([4, 5, 1], seed=0), KFAC(0.01, 0.0)
    net.layers[2].params["W"][...] = 0.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CurvatureWarning)
        opt.step(net, X, Y, losses.mse())
    new = {"v": np.zeros(2), "c": np.zeros(2), "l": np.zeros(2)}
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        add_neurons(net, 0, rng.standard_normal((2, 4)), act=new, optimizer=opt)
    shown = [str(w.message) for w in seen if issubclass(w.category, CurvatureWarning)]
    assert any(m.startswith("dense0 G (damped): 2 of 7 eigenvalues") for m in shown), shown
    assert any(m.startswith("per-unit blocks (damped)") for m in shown), shown
    assert not any(m.startswith("dense1 A") for m in shown), shown       # its new rows: 1/(mA + 0), mA > 0
    assert np.all(opt.inverses["dense0"][1][5:, 5:] == 0.0)
