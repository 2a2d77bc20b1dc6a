"""Bad input to the trainer, its config, the criterion, pruning rounds, the optimisers, ``fit`` and the
CLI is refused before anything changes (issue 10): the exception type, a message naming the
argument, and the network (every parameter bit for bit, the layers), the optimiser state and the
files of an existing checkpoint folder are unchanged; nothing is trained, written or logged.
Hypothesis draws the bad values (profiles in tests/conftest.py).  derivations/21-trainer.md,
derivations/22-run-checkpoints.md."""
import dataclasses
import json
import os

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from senn_ref import losses, mlp
from senn_ref.cli import main
from senn_ref.datasets import teacher_regression
from senn_ref.grow.criterion import decide, rate_bound
from senn_ref.grow.pruning_round import pruning_round
from senn_ref.layers import Dense
from senn_ref.optim import KFAC, SGD, Adam, NaturalGradientCG
from senn_ref.train import fit
from senn_ref.trainer import SENNConfig, train_senn
from senn_ref.trainer.config import ETA_C, GAINS, LR_SCHEDULES, METRICS, OPTIMIZERS, SCORES, SEARCHES

FAST = settings(max_examples=30, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])

# -- snapshots ------------------------------------------------------------------------------


def net_snapshot(net):
    return [(la.name, type(la).__name__) for la in net.layers], \
        {k: (v.shape, v.tobytes()) for k, v in net.named_params().items()}


def same(a, b) -> bool:
    """Deep equality of optimiser state dicts: arrays bit for bit (dtype and shape too)."""
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return (isinstance(a, np.ndarray) and isinstance(b, np.ndarray) and a.dtype == b.dtype
                and a.shape == b.shape and a.tobytes() == b.tobytes())
    if isinstance(a, dict):
        return isinstance(b, dict) and list(a) == list(b) and all(same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return type(a) is type(b) and len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    return a == b


def files(folder) -> dict:
    out = {}
    for root, _, names in os.walk(folder):
        for n in names:
            with open(os.path.join(root, n), "rb") as fh:
                out[os.path.relpath(os.path.join(root, n), folder)] = fh.read()
    return out


def refused(call, exc, name):
    """``call()`` raises ``exc`` whose message names ``name``; returns the message."""
    with pytest.raises(exc) as info:
        call()
    assert name in str(info.value), f"{name!r} not named in: {info.value}"
    return str(info.value)


# -- SENNConfig: every field, drawn bad values ----------------------------------------------

POS_INT = ("steps", "expand_every", "max_additions_per_round", "max_width", "max_layers", "n_candidates",
           "cg_maxiter", "history_every", "min_width")
NONNEG_INT = ("warmup", "width_cooldown", "depth_cooldown", "search_steps")
OPT_INT = ("batch_size", "score_batch", "search_batch")
POS_FLOAT = ("lr", "tau", "alpha_rel", "depth_cost", "search_lr", "temperature", "prune_tau")
NONNEG_FLOAT = ("damping", "weight_decay")
OPT_FLOAT = ("score_damping",)
FLAGS = ("recursive", "width", "depth", "prune", "quiet")
OPTIONS = {"optimizer": OPTIMIZERS, "gain": GAINS, "eta_c": ETA_C, "search": SEARCHES, "metric": METRICS,
           "score": SCORES, "lr_schedule": LR_SCHEDULES}


def test_the_field_lists_cover_every_config_field():
    listed = POS_INT + NONNEG_INT + OPT_INT + POS_FLOAT + NONNEG_FLOAT + OPT_FLOAT + FLAGS + tuple(OPTIONS)
    assert sorted(listed) == sorted(f.name for f in dataclasses.fields(SENNConfig))


NOT_A_NUMBER = st.sampled_from(["3", "0.1", b"1", [0.5], (1,), {"x": 1}, 1j, np.array([0.5]), object()])
NOT_AN_INT = st.one_of(NOT_A_NUMBER, st.sampled_from([2.5, 1.0, np.float64(3.0), True, np.bool_(False)]))


@st.composite
def bad_field(draw):
    """(field, bad value, expected exception type)."""
    kind = draw(st.sampled_from(["pos_int", "nonneg_int", "opt_int", "pos_float", "nonneg_float", "opt_float",
                                 "flag", "option"]))
    if kind in ("pos_int", "nonneg_int", "opt_int"):
        field = draw(st.sampled_from({"pos_int": POS_INT, "nonneg_int": NONNEG_INT, "opt_int": OPT_INT}[kind]))
        lowest = 0 if kind == "nonneg_int" else 1
        if kind != "opt_int" and draw(st.booleans()):
            return field, None, TypeError
        if draw(st.booleans()):
            return field, draw(st.integers(max_value=lowest - 1, min_value=-10**12)), ValueError
        return field, draw(NOT_AN_INT), TypeError
    if kind in ("pos_float", "nonneg_float", "opt_float"):
        field = draw(st.sampled_from({"pos_float": POS_FLOAT, "nonneg_float": NONNEG_FLOAT,
                                      "opt_float": OPT_FLOAT}[kind]))
        if kind != "opt_float" and draw(st.booleans()):
            return field, None, TypeError
        low = st.floats(max_value=0.0 if kind == "pos_float" else -1e-300, allow_nan=False)
        value = draw(st.one_of(low, st.sampled_from([float("nan"), float("inf"), -float("inf")])))
        if field == "alpha_rel" and draw(st.booleans()):
            value = draw(st.floats(min_value=1.0, exclude_min=True, allow_nan=False))
        if draw(st.booleans()):
            return field, value, ValueError
        return field, draw(st.one_of(NOT_A_NUMBER, st.sampled_from([True, False, np.bool_(True)]))), TypeError
    if kind == "flag":
        return draw(st.sampled_from(FLAGS)), draw(st.sampled_from([0, 1, 1.0, "True", "yes", None, [True]])), TypeError
    field = draw(st.sampled_from(sorted(OPTIONS)))
    if draw(st.booleans()):
        return field, draw(st.one_of(st.none(), st.integers(), st.lists(st.sampled_from(OPTIONS[field]), max_size=1),
                                     st.binary(max_size=3))), TypeError
    return field, draw(st.text(max_size=12).filter(lambda s: s not in OPTIONS[field])), ValueError


@FAST
@given(bad_field())
def test_every_config_field_refuses_bad_values_naming_it(case):
    field, value, exc = case
    refused(lambda: SENNConfig(**{field: value}), exc, field)
    refused(lambda: SENNConfig().replace(**{field: value}), exc, field)
    refused(lambda: SENNConfig.from_dict({field: value}), exc, field)
    c = SENNConfig()
    setattr(c, field, value)                   # a field changed after construction: validate() finds it
    refused(c.validate, exc, field)


@FAST
@given(st.text(min_size=1, max_size=10).filter(lambda s: s not in {f.name for f in dataclasses.fields(SENNConfig)}))
def test_unknown_field_names_are_refused(name):
    c = SENNConfig(tau=0.5)
    refused(lambda: c.replace(**{name: 1}), ValueError, repr(name))
    refused(lambda: SENNConfig.from_dict({name: 1, "tau": 0.5}), ValueError, repr(name))
    assert c.tau == 0.5
    for bad in ([("tau", 1.0)], "tau=1", None, 3):
        refused(lambda: SENNConfig.from_dict(bad), TypeError, "config")
    refused(lambda: SENNConfig(min_width=5, max_width=4), ValueError, "min_width")


# -- train_senn ------------------------------------------------------------------------------

SMALL = dict(steps=3, expand_every=2, n_candidates=4, search_steps=1, quiet=True)


@pytest.fixture(scope="module")
def run_folder(tmp_path_factory):
    """A finished tiny run with its checkpoints; every refused call must leave its files alone."""
    X, Y, _, _, _ = teacher_regression(n_train=30, n_test=10, seed=1)
    folder = tmp_path_factory.mktemp("run")
    train_senn(mlp([1, 3, 1], seed=0), X, Y, losses.mse(), SENNConfig(**SMALL), checkpoint_dir=str(folder),
               checkpoint_every=1)
    assert any(n.startswith("run-") for n in os.listdir(folder))
    return X, Y, str(folder)


def _bad_config():
    c = SENNConfig(**SMALL)
    c.lr = "0.1"
    return c


@st.composite
def bad_train_argument(draw):
    """(keyword changes, expected exception, name in the message) for train_senn(net, X, Y, loss, ...)."""
    N = 30
    i = draw(st.integers(0, N - 1))
    X = np.linspace(-1, 1, N)[:, None]
    nan = X.copy()
    nan[i, 0] = draw(st.sampled_from([np.nan, np.inf, -np.inf]))
    Y = np.zeros((N, 1))
    ynan = Y.copy()
    ynan[i, 0] = np.nan
    k = draw(st.integers(1, N - 1))
    return draw(st.sampled_from([
        (dict(X=nan), ValueError, "X"),
        (dict(X=X.astype(np.int64)), TypeError, "X"),
        (dict(X=X.astype(complex)), TypeError, "X"),
        (dict(X=X[:, 0]), ValueError, "X"),
        (dict(X=np.hstack([X, X])), ValueError, "X"),
        (dict(X=X[:0]), ValueError, "X"),
        (dict(Y=ynan), ValueError, "Y"),
        (dict(Y=Y[:k]), ValueError, "Y"),
        (dict(Y=np.zeros((N, 2))), ValueError, "Y"),
        (dict(Y=Y.astype(np.int64)), TypeError, "Y"),
        (dict(loss="mse"), TypeError, "loss"),
        (dict(loss=losses.mse), TypeError, "loss"),
        (dict(loss=None), TypeError, "loss"),
        (dict(config={"tau": 1.0}), TypeError, "config"),
        (dict(config="default"), TypeError, "config"),
        (dict(config=_bad_config()), TypeError, "lr"),
        (dict(config=SENNConfig(**{**SMALL, "max_width": 2})), ValueError, "max_width"),
        (dict(config=SENNConfig(**{**SMALL, "max_layers": 1})), ValueError, "max_layers"),
        (dict(net=[Dense(1, 3), Dense(3, 1)]), TypeError, "net"),
        (dict(net=None), TypeError, "net"),
        (dict(X_val=X), ValueError, "X_val"),
        (dict(X_val=nan, Y_val=Y), ValueError, "X_val"),
        (dict(X_val=X, Y_val=Y[:k]), ValueError, "Y_val"),
        (dict(X_val=X, Y_val=ynan), ValueError, "Y_val"),
        (dict(seed=-draw(st.integers(1, 10**6))), ValueError, "seed"),
        (dict(seed=draw(st.sampled_from([1.5, "0", True, None, np.float64(1.0)]))), TypeError, "seed"),
        (dict(callback=draw(st.sampled_from([3, "print", [print]]))), TypeError, "callback"),
        (dict(checkpoint_dir=draw(st.sampled_from([3, b"run", ["run"]]))), TypeError, "checkpoint_dir"),
        (dict(checkpoint_every=-draw(st.integers(0, 5))), ValueError, "checkpoint_every"),
        (dict(checkpoint_every=draw(st.sampled_from([1.5, "2", True]))), TypeError, "checkpoint_every"),
        (dict(checkpoint_seconds=draw(st.sampled_from([0.0, -1.0, np.nan, np.inf]))), ValueError,
         "checkpoint_seconds"),
        (dict(checkpoint_seconds=draw(st.sampled_from(["5", True, [5.0]]))), TypeError,
         "checkpoint_seconds"),
        (dict(checkpoint_rounds=draw(st.sampled_from([1, "yes", None]))), TypeError, "checkpoint_rounds"),
        (dict(resume=draw(st.sampled_from([1, "True", None]))), TypeError, "resume"),
    ]))


@FAST
@given(bad_train_argument(), st.booleans())
def test_train_senn_refuses_bad_arguments_before_anything_changes(run_folder, case, with_folder):
    X, Y, folder = run_folder
    changes, exc, name = case
    net = mlp([1, 3, 1], seed=0)                      # the run's starting network: resume would accept it
    before, disk = net_snapshot(net), files(folder)
    kwargs = dict(net=net, X=X, Y=Y, loss=losses.mse(), config=SENNConfig(**SMALL))
    if with_folder:
        kwargs.update(checkpoint_dir=folder, resume=True)
    kwargs.update(changes)
    refused(lambda: train_senn(**kwargs), exc, name)
    assert net_snapshot(net) == before
    assert files(folder) == disk


def test_checkpoint_arguments_without_a_folder_are_refused(run_folder):
    X, Y, _ = run_folder
    for kw in (dict(resume=True), dict(checkpoint_every=2), dict(checkpoint_seconds=1.0)):
        net = mlp([1, 3, 1], seed=0)
        before = net_snapshot(net)
        refused(lambda: train_senn(net, X, Y, losses.mse(), SENNConfig(**SMALL), **kw), ValueError, "checkpoint_dir")
        assert net_snapshot(net) == before


@FAST
@given(st.sampled_from([None, 3, b"log.json", ["log.json"]]))
def test_log_files_and_make_optimizer_refuse_bad_arguments(tmp_path, path):
    from senn_ref.trainer import SENNLog, make_optimizer
    log = SENNLog(config={"tau": 1.0})
    before = json.dumps(log.to_dict())
    refused(lambda: log.to_json(path), TypeError, "path")
    refused(lambda: SENNLog.from_json(path), TypeError, "path")
    assert json.dumps(log.to_dict()) == before and os.listdir(tmp_path) == []
    (tmp_path / "x.json").write_text(json.dumps({"format": "other"}))
    refused(lambda: SENNLog.from_json(tmp_path / "x.json"), ValueError, "x.json")
    refused(lambda: make_optimizer({"optimizer": "sgd"}), TypeError, "config")
    refused(lambda: make_optimizer(_bad_config()), TypeError, "lr")
    (tmp_path / "x.json").unlink()


# -- the criterion -----------------------------------------------------------------------------

BAD_SCALAR = st.one_of(st.sampled_from([(np.nan, ValueError), (np.inf, ValueError), ("1", TypeError),
                                        (None, TypeError), (True, TypeError), ([1.0], TypeError),
                                        (1j, TypeError)]),
                       st.floats(max_value=-1e-300, allow_nan=False).map(lambda v: (v, ValueError)))


@FAST
@given(st.sampled_from(["tau", "alpha_rel", "eta_c", "lam", "cost"]), BAD_SCALAR)
def test_decide_refuses_bad_thresholds_naming_them(name, bad):
    value, exc = bad
    args = dict(gain=1.0, eta_c=0.5, lam=2.0, tau=1.0, alpha_rel=0.01, cost=1.0)
    args[name] = value
    refused(lambda: decide(**args), exc, name)
    if name in ("tau", "alpha_rel"):
        refused(lambda: rate_bound(**{"tau": 1.0, "alpha_rel": 0.01, name: value}), exc, name)


@FAST
@given(st.sampled_from(["1.0", b"1", None, [1.0], np.array([1.0, 2.0]), True, 1j, {"gain": 1}]))
def test_decide_refuses_a_gain_that_is_not_a_number(gain):
    refused(lambda: decide(gain, 0.5, 2.0, 1.0, 0.01), TypeError, "gain")


def test_decide_rejects_non_finite_gains_and_rate_bound_needs_alpha_rel_at_most_one():
    for g in (np.nan, np.inf, -np.inf):
        d = decide(g, 0.5, 2.0, 1.0, 0.01)
        assert not d.accepted and not d.passes_relative and not d.passes_absolute
    assert decide(np.float64(3.0), 0.5, 2.0, 1.0, 0.01).accepted and decide(3, 0.5, 2.0, 1.0, 0.01).accepted
    refused(lambda: rate_bound(1.0, 1.5), ValueError, "alpha_rel")
    refused(lambda: decide(1.0, 0.5, 2.0, 0.0, 0.01), ValueError, "tau")


# -- pruning rounds ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def pruning_case():
    X, Y, _, _, _ = teacher_regression(n_train=30, n_test=10, seed=1)
    net = mlp([1, 4, 1], seed=0)
    opt = KFAC(0.05, damping=0.1)
    opt.step(net, X, Y, losses.mse())
    return net, opt, X, Y, SENNConfig(prune=True, prune_tau=1e9, quiet=True)   # would prune everything


@FAST
@given(st.sampled_from([
    (dict(net=[Dense(1, 4)]), TypeError, "net"),
    (dict(X=np.full((30, 1), np.nan)), ValueError, "X"),
    (dict(X=np.zeros((30, 2))), ValueError, "X"),
    (dict(Y=np.zeros((29, 1))), ValueError, "Y"),
    (dict(loss="mse"), TypeError, "loss"),
    (dict(config={"prune_tau": 1.0}), TypeError, "config"),
    (dict(config="bad-lr"), TypeError, "lr"),
    (dict(optimizer=3), TypeError, "optimizer"),
    (dict(optimizer="same-twice"), ValueError, "optimizer"),
    (dict(step=-1), ValueError, "step"),
    (dict(step=1.5), TypeError, "step"),
    (dict(round_index=-2), ValueError, "round_index"),
    (dict(round_index="0"), TypeError, "round_index"),
]))
def test_pruning_round_refuses_bad_arguments_before_removing_anything(pruning_case, case):
    net, opt, X, Y, config = pruning_case
    changes, exc, name = case
    kwargs = dict(net=net, X=X, Y=Y, loss=losses.mse(), config=config, optimizer=opt, step=0, round_index=0)
    kwargs.update(changes)
    if changes.get("config") == "bad-lr":
        kwargs["config"] = dataclasses.replace(config)
        kwargs["config"].lr = "0.1"
    if changes.get("optimizer") == "same-twice":
        kwargs["optimizer"] = [opt, opt]
    before, state = net_snapshot(net), opt.state_dict()
    refused(lambda: pruning_round(**kwargs), exc, name)
    assert net_snapshot(net) == before and same(opt.state_dict(), state)


# -- optimisers -------------------------------------------------------------------------------

CONSTRUCTORS = {
    "SGD": (lambda **kw: SGD(**{"lr": 0.1, **kw}), {"lr": 0.0, "momentum": 0.0, "weight_decay": 0.0}),
    "Adam": (lambda **kw: Adam(**kw), {"lr": 0.0, "beta1": 0.0, "beta2": 0.0, "weight_decay": 0.0, "eps": None}),
    "KFAC": (lambda **kw: KFAC(**{"lr": 0.1, "damping": 0.1, **kw}),
             {"lr": None, "damping": 0.0, "weight_decay": 0.0, "ema": 0.0, "kl_clip": None}),
    "NaturalGradientCG": (lambda **kw: NaturalGradientCG(**kw),
                          {"lr": None, "damping": 0.0, "weight_decay": 0.0, "cg_tol": None}),
}


@FAST
@given(st.sampled_from(sorted(CONSTRUCTORS)), st.data())
def test_optimiser_constructors_refuse_bad_hyperparameters_naming_them(which, data):
    build, fields = CONSTRUCTORS[which]
    name = data.draw(st.sampled_from(sorted(fields)))
    value, exc = data.draw(BAD_SCALAR)
    if value is None and name == "kl_clip":
        return                                  # kl_clip=None is "off"
    refused(lambda: build(**{name: value}), exc, name)


@pytest.mark.parametrize("build, name, value, exc", [
    (lambda **kw: SGD(0.1, **kw), "momentum", 1.0, ValueError),
    (lambda **kw: SGD(0.1, momentum=0.5, **kw), "nesterov", 1, TypeError),
    (Adam, "beta1", 1.0, ValueError), (Adam, "beta2", 1.5, ValueError),
    (lambda **kw: SGD(0.1, **kw), "nesterov", True, ValueError),         # Nesterov needs momentum
    (lambda **kw: KFAC(0.1, 0.1, **kw), "ema", 1.0, ValueError),
    (lambda **kw: KFAC(0.1, 0.1, **kw), "inverse_every", 0, ValueError),
    (lambda **kw: KFAC(0.1, 0.1, **kw), "inverse_every", 1.5, TypeError),
    (lambda **kw: KFAC(0.1, 0.1, **kw), "metric", "hessian", ValueError),
    (lambda **kw: KFAC(0.1, 0.1, **kw), "metric", 3, TypeError),
    (lambda **kw: KFAC(0.1, 0.1, **kw), "mode", "diag", ValueError),
    (lambda **kw: KFAC(0.1, 0.1, **kw), "n_samples", 0, ValueError),
    (lambda **kw: KFAC(0.1, 0.1, mode="mc", **kw), "rng", 3, TypeError),
    (lambda **kw: KFAC(0.1, 0.1, **kw), "pi", "trace-norm", ValueError),
    (lambda **kw: KFAC(0.1, 0.1, **kw), "pi", 0.0, ValueError),
    (lambda **kw: KFAC(0.1, 0.1, **kw), "kl_clip", 0.0, ValueError),
    (NaturalGradientCG, "metric", "hessian", ValueError), (NaturalGradientCG, "metric", None, TypeError),
    (NaturalGradientCG, "cg_maxiter", 0, ValueError), (NaturalGradientCG, "cg_maxiter", "10", TypeError),
])
def test_optimiser_option_checks(build, name, value, exc):
    refused(lambda: build(**{name: value}), exc, name)


@pytest.mark.parametrize("which", ["SGD", "Adam", "KFAC", "NaturalGradientCG"])
@pytest.mark.parametrize("zero", [0.0, -0.0, 0, np.float64(0.0)])
def test_every_optimiser_refuses_a_zero_learning_rate(which, zero):
    """lr = 0 is no step at all (a silent no-op run): refused by the constructor and by a later
    assignment, naming lr, and the optimiser keeps its lr and state."""
    build = {"SGD": lambda: SGD(zero), "Adam": lambda: Adam(zero), "KFAC": lambda: KFAC(zero, 0.1),
             "NaturalGradientCG": lambda: NaturalGradientCG(zero)}[which]
    message = refused(build, ValueError, "lr")
    assert "> 0" in message, message
    net, opt, _, _ = _trained(which)
    state = opt.state_dict()
    refused(lambda: setattr(opt, "lr", zero), ValueError, "lr")
    assert opt.lr == {"SGD": 0.1, "Adam": 0.01, "KFAC": 0.05, "NaturalGradientCG": 0.1}[which]
    assert same(opt.state_dict(), state)


def _trained(which):
    X = np.random.default_rng(0).standard_normal((12, 3))
    Y = np.random.default_rng(1).standard_normal((12, 2))
    net = mlp([3, 4, 2], seed=0)
    opt = {"SGD": SGD(0.1, momentum=0.9), "Adam": Adam(0.01), "KFAC": KFAC(0.05, 0.1),
           "NaturalGradientCG": NaturalGradientCG(0.1, 0.1)}[which]
    if getattr(opt, "uses_curvature", False):
        opt.step(net, X, Y, losses.mse())
    else:
        opt.step(net.named_params(), net.loss_and_grad(X, Y, losses.mse())[1].grads)
    return net, opt, X, Y


@FAST
@given(st.sampled_from(["SGD", "Adam", "KFAC", "NaturalGradientCG"]), BAD_SCALAR)
def test_a_bad_learning_rate_assignment_changes_nothing(which, bad):
    net, opt, _, _ = _trained(which)
    value, exc = bad
    refused(lambda: setattr(opt, "lr", value), exc, "lr")
    assert opt.lr == {"SGD": 0.1, "Adam": 0.01, "KFAC": 0.05, "NaturalGradientCG": 0.1}[which]


@FAST
@given(st.sampled_from(["SGD", "Adam"]), st.sampled_from(["missing", "extra", "shape", "nan", "int", "list"]))
def test_first_order_step_refuses_bad_gradients_before_updating(which, how):
    net, opt, X, Y = _trained(which)
    params = net.named_params()
    grads = {k: g.copy() for k, g in net.loss_and_grad(X, Y, losses.mse())[1].grads.items()}
    key = sorted(grads)[1]
    exc = ValueError
    if how == "missing":
        del grads[key]
    elif how == "extra":
        grads["nosuch.W"] = np.zeros(3)
    elif how == "shape":
        grads[key] = np.zeros(grads[key].shape + (1,))
    elif how == "nan":
        grads[key][(0,) * grads[key].ndim] = np.nan
    elif how == "int":
        grads[key], exc = grads[key].astype(np.int64), TypeError
    else:
        grads, exc = list(grads.values()), TypeError
    before, state = net_snapshot(net), opt.state_dict()
    refused(lambda: opt.step(params, grads), exc, "grads")
    assert net_snapshot(net) == before and same(opt.state_dict(), state)


@FAST
@given(st.sampled_from(["KFAC", "NaturalGradientCG"]), st.sampled_from([
    ("X", "nan", ValueError), ("X", "shape", ValueError), ("X", "int", TypeError), ("Y", "rows", ValueError),
    ("Y", "nan", ValueError), ("Y", "cols", ValueError), ("loss", "str", TypeError), ("net", "list", TypeError),
    ("state", "grown", ValueError)]))
def test_curvature_step_refuses_bad_input_before_updating(which, case):
    net, opt, X, Y = _trained(which)
    what, how, exc = case
    args = dict(net=net, X=X, Y=Y, loss=losses.mse())
    name = what
    if what == "X":
        args["X"] = {"nan": np.where(np.arange(12)[:, None] == 5, np.nan, X), "shape": X[:, :2],
                     "int": X.astype(np.int64)}[how]
    elif what == "Y":
        args["Y"] = {"rows": Y[:5], "nan": np.where(np.arange(12)[:, None] == 2, np.nan, Y),
                     "cols": Y[:, :1]}[how]
    elif what == "loss":
        args["loss"] = "mse"
    elif what == "net":
        args["net"] = list(net.layers)
    else:                                       # the net grew but the optimiser was not told
        from senn_ref.grow.add_neurons import add_neurons
        add_neurons(net, 0, np.zeros((1, 3)), rng=np.random.default_rng(0))
        name = "dense0"
    before, state = net_snapshot(net), opt.state_dict()
    refused(lambda: opt.step(**args), exc, name)
    assert net_snapshot(net) == before and same(opt.state_dict(), state)


# -- fit ----------------------------------------------------------------------------------------

@FAST
@given(st.sampled_from(["SGD", "KFAC"]), st.sampled_from([
    (dict(optimizer=None), TypeError, "optimizer"), (dict(optimizer="sgd"), TypeError, "optimizer"),
    (dict(epochs=0), ValueError, "epochs"), (dict(epochs=1.5), TypeError, "epochs"),
    (dict(batch_size=0), ValueError, "batch_size"), (dict(batch_size="4"), TypeError, "batch_size"),
    (dict(seed=-1), ValueError, "seed"), (dict(seed="1"), TypeError, "seed"),
    (dict(callback=3), TypeError, "callback"), (dict(X="nan"), ValueError, "X"),
    (dict(Y="short"), ValueError, "Y"), (dict(X_val="only"), ValueError, "X_val"),
    (dict(loss="mse"), TypeError, "loss"), (dict(net=[]), TypeError, "net"),
]))
def test_fit_refuses_bad_arguments_before_the_first_update(which, case):
    net, opt, X, Y = _trained(which)
    changes, exc, name = case
    kwargs = dict(net=net, X=X, Y=Y, loss=losses.mse(), optimizer=opt, epochs=2)
    kwargs.update(changes)
    if changes.get("X") == "nan":
        kwargs["X"] = np.where(np.arange(12)[:, None] == 3, np.nan, X)
    if changes.get("Y") == "short":
        kwargs["Y"] = Y[:-1]
    if changes.get("X_val") == "only":
        kwargs["X_val"] = X
    before, state = net_snapshot(net), opt.state_dict()
    refused(lambda: fit(**kwargs), exc, name)
    assert net_snapshot(net) == before and same(opt.state_dict(), state)


# -- the command line -------------------------------------------------------------------------

@pytest.fixture
def nothing_runs(monkeypatch):
    """Replace everything that would train or compute by recorders: a refusal must call none."""
    import senn_ref.demos.runner as runner
    import senn_ref.demos.sweep as sweep
    import senn_ref.verify as verify
    calls = []
    monkeypatch.setattr(runner, "run_demo", lambda *a, **kw: calls.append("demo"))
    monkeypatch.setattr(sweep, "run_sweep", lambda *a, **kw: calls.append("sweep"))
    monkeypatch.setattr(verify, "run", lambda *a, **kw: calls.append("verify") or [])
    return calls


def _one_line(capsys, argv) -> str:
    with pytest.raises(SystemExit) as info:
        main(argv)
    err = capsys.readouterr().err
    assert info.value.code == 2, (argv, info.value.code, err)
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    return err


NOT_INT = st.one_of(st.text(min_size=1, max_size=6).filter(lambda s: not s.strip().lstrip("+-").isdigit()
                                                               and not s.startswith("-")),
                    st.floats(allow_nan=False, allow_infinity=False).map(lambda v: f"{v}.5" if v == int(v) else repr(v)))


@FAST
@given(st.sampled_from([("demo", "--steps", 1), ("demo", "--seed", 0), ("sweep", "--steps", 1),
                        ("sweep", "--jobs", 1), ("sweep", "--seed", 0), ("verify", "--seed", 0),
                        ("verify", "--trials", 1)]),
       st.one_of(st.integers(max_value=-1, min_value=-10**6).map(str), NOT_INT, st.just("0")))
def test_integer_flags_refuse_bad_values_in_one_line(capsys, nothing_runs, flag_case, text):
    command, flag, minimum = flag_case
    if text == "0" and minimum == 0:
        text = "zero"
    argv = [command] + (["regression1d"] if command == "sweep" else []) + [flag, text]
    if text.startswith("-"):
        argv = argv[:-2] + [f"{flag}={text}"]
    err = _one_line(capsys, argv)
    assert flag in err and nothing_runs == []


@pytest.mark.parametrize("argv, flag", [
    (["demo", "nosuchdemo"], "NAME"),
    (["demo", "--set", "tau"], "--set"),
    (["demo", "--set", "lr=abc"], "lr"),
    (["demo", "--set", "lr=0.1,0.2"], "--set"),
    (["demo", "--set", "tau=-1"], "tau"),
    (["demo", "--set", "optimizer=lbfgs"], "optimizer"),
    (["demo", "--set", "n_candidates=2.5"], "n_candidates"),
    (["demo", "--set", "nosuchoption=1"], "nosuchoption"),
    (["demo", "--nosuchflag"], "--nosuchflag"),
    (["demo", "--quick=yes"], "--quick"),
    (["demo", "--resume=no"], "--resume"),
    (["sweep", "regression1d", "--baselines=1"], "--baselines"),
    (["verify", "--json=1"], "--json"),
    (["demo", "--config", "MISSING"], "--config"),
    (["demo", "--config", "BADJSON"], "--config"),
    (["demo", "--config", "UNKNOWN"], "taus"),
    (["demo", "--config", "STRING_LR"], "lr"),
    (["demo", "--config", "LIST"], "--config"),
    (["sweep", "nosuchdemo"], "NAME"),
    (["sweep"], "name"),
    (["sweep", "regression1d", "--seeds", "x"], "--seeds"),
    (["sweep", "regression1d", "--seeds", "3-1"], "--seeds"),
    (["sweep", "regression1d", "--seeds", "1,1"], "--seeds"),
    (["sweep", "regression1d", "--set", "tau"], "--set"),
    (["sweep", "regression1d", "--scheduler", "http://127.0.0.1:8786"], "--scheduler"),
    (["sweep", "regression1d", "--scheduler", "tcp://127.0.0.1:70000"], "--scheduler"),
    (["sweep", "regression1d", "--scheduler", "local host"], "--scheduler"),
    (["demo", "mnist", "--data", "MISSING"], "--data"),
    (["demo", "regression1d", "--data", "."], "--data"),
    (["verify", "--claim", "nosuchclaim"], "--claim"),
    (["bench", "nosuchbench"], "what"),
    (["bench"], "what"),
    (["frobnicate"], "command"),
])
def test_cli_flags_refuse_bad_values_in_one_line(capsys, nothing_runs, tmp_path, argv, flag):
    paths = {"MISSING": tmp_path / "missing.json", "BADJSON": tmp_path / "bad.json",
             "UNKNOWN": tmp_path / "unknown.json", "STRING_LR": tmp_path / "lr.json", "LIST": tmp_path / "list.json"}
    paths["BADJSON"].write_text("{tau: 1")
    paths["UNKNOWN"].write_text(json.dumps({"taus": 1.0}))
    paths["STRING_LR"].write_text(json.dumps({"lr": "0.1"}))       # a number in quotes is refused
    paths["LIST"].write_text(json.dumps([1, 2]))
    argv = [str(paths.get(a, a)) for a in argv] + (["--out", str(tmp_path / "out")] if argv[0] in ("demo", "sweep")
                                                    and len(argv) > 1 else [])
    err = _one_line(capsys, argv)
    assert flag in err and nothing_runs == []
    assert not (tmp_path / "out").exists()
