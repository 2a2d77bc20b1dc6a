"""The exact Jacobian by reverse mode (per-example backward passes) against its forward-mode twin.

``jacobian_reverse`` and ``jacobian_forward`` compute the same matrix by different sums
(a per-example outer product or spatial sum versus a JVP through the later layers), so
they agree to rounding: 1e-12 relative (2-norm) leaves a wide margin.  The per-example
backward of every layer must sum over the batch to the ordinary backward (same sums
in another order: 1e-12).  ``derivations/09-fisher.md`` section 3b.
"""
import importlib

import numpy as np
import pytest

from senn_ref import backend
from senn_ref.architectures import convnet, mlp
from senn_ref.fisher import exact, ggn_factor, jacobian
from senn_ref.fisher.exact import jacobian_forward, jacobian_reverse
from senn_ref.layers.base import Layer
from senn_ref.layers.conv2d import Conv2D
from senn_ref.layers.dense import Dense
from senn_ref.layers.rational import Rational
from senn_ref.losses import mse, softmax_cross_entropy
from senn_ref.network import Network
from senn_ref.testing import assert_rel_error

# the module (the attribute senn_ref.fisher.exact is the re-exported function exact)
exact_module = importlib.import_module("senn_ref.fisher.exact")


def _cases(rng):
    yield "rational 1-16-1", mlp([1, 16, 1], seed=1), rng.standard_normal((9, 1))
    yield "tanh 3-8-8-4", mlp([3, 8, 8, 4], activation="tanh", seed=2), rng.standard_normal((7, 3))
    yield "silu 2-5-3", mlp([2, 5, 3], activation="silu", seed=3), rng.standard_normal((5, 2))
    yield "conv rational avg", convnet(channels=(3, 4), n_classes=5, seed=4), rng.standard_normal((3, 1, 8, 8))
    yield "conv tanh max", convnet(channels=(2, 3), activation="tanh", pool="max", n_classes=4,
                                   seed=5), rng.standard_normal((4, 1, 8, 8))
    yield "conv silu gap", convnet(channels=(3, 2), activation="silu", head="gap", n_classes=3,
                                   seed=6), rng.standard_normal((2, 1, 8, 8))
    strided = Network([Conv2D(2, 3, 3, stride=2, padding=1, rng=rng, bias_std=0.3, in_hw=(5, 5)),
                       Rational(3, rng=rng, spatial=(3, 3)),
                       Conv2D(3, 2, 2, rng=rng, bias_std=0.3, in_hw=(3, 3))])
    yield "conv strided, conv output", strided, rng.standard_normal((3, 2, 5, 5))


@pytest.mark.parametrize("which", ["numba", "numpy"])
def test_reverse_equals_forward(rng, which):
    with backend.using(which):
        for name, net, X in _cases(rng):
            Jf = jacobian_forward(net, X)
            Jr = jacobian_reverse(net, X)
            assert Jr.shape == Jf.shape == (X.shape[0], Jf.shape[1], net.num_params())
            assert_rel_error(Jr, Jf, 1e-12, f"reverse vs forward Jacobian, {name}")
            assert_rel_error(jacobian(net, X), Jf, 1e-12, f"jacobian (auto mode), {name}")


def test_per_example_backward_sums_to_backward(rng):
    for name, net, X in _cases(rng):
        out = net.forward(X)
        g = rng.standard_normal(out.shape)
        for i in range(len(net.layers) - 1, -1, -1):
            layer = net.layers[i]
            dX, grads = layer.backward(g)
            dX1, per = layer.backward_per_example(g)
            assert_rel_error(dX1, dX, 1e-12, f"{name} {layer._label()} input gradient")
            for key in layer.param_names:
                assert per[key].shape == (X.shape[0],) + layer.params[key].shape
                assert_rel_error(per[key].sum(axis=0), grads[key], 1e-12, f"{name} {layer._label()}.{key}")
            g = dX


def test_per_example_gradient_is_the_single_example_gradient(rng):
    """Row n of the per-example gradient is the ordinary gradient of the batch {x_n}."""
    net = convnet(channels=(2,), n_classes=3, seed=7)
    X = rng.standard_normal((3, 1, 8, 8))
    E = rng.standard_normal((3, 3))
    net.forward(X)
    conv = net.layers[0]
    g = E
    for layer in reversed(net.layers[1:]):
        g, _ = layer.backward(g)
    _, per = conv.backward_per_example(g)
    for n in range(3):
        net.forward(X[n:n + 1])
        single = net.backward(E[n:n + 1]).grads
        assert_rel_error(per["W"][n], single[f"{conv.name}.W"], 1e-12, f"conv W example {n}")
        assert_rel_error(per["b"][n], single[f"{conv.name}.b"], 1e-12, f"conv b example {n}")


def test_mode_choice(rng, monkeypatch):
    """Reverse mode when K < P and every parameterised layer has a per-example backward;
    forward mode otherwise (K >= P, or a layer without one)."""
    calls = []
    monkeypatch.setattr(exact_module, "_reverse_at", lambda net, out: calls.append("reverse") or 0)
    monkeypatch.setattr(exact_module, "_forward_at", lambda net, out: calls.append("forward") or 0)
    jacobian(mlp([2, 3, 2], seed=0), rng.standard_normal((4, 2)))        # K = 2 < P = 24
    jacobian(Network([Dense(1, 1, rng)]), rng.standard_normal((4, 1)))   # K = 1 < P = 2
    pointwise = Network([Conv2D(1, 1, 1, rng=rng, in_hw=(4, 4))])          # K = 16 > P = 2
    jacobian(pointwise, rng.standard_normal((2, 1, 4, 4)))
    assert calls == ["reverse", "reverse", "forward"]
    calls.clear()

    class Plain(Dense):                 # a parameterised layer without a per-example backward
        backward_per_example = Layer.backward_per_example

    jacobian(Network([Plain(2, 2, rng)]), rng.standard_normal((3, 2)))
    assert calls == ["forward"]
    with pytest.raises(NotImplementedError, match="backward_per_example"):
        jacobian_reverse(Network([Plain(2, 2, rng)]), rng.standard_normal((3, 2)))


def test_forward_mode_when_outputs_outnumber_parameters(rng):
    """K >= P (a 1x1 convolution of a 4x4 image: K = 16, P = 2): forward mode is chosen,
    and the reverse pass still gives the same matrix."""
    net = Network([Conv2D(1, 1, 1, rng=rng, bias_std=1.0, in_hw=(4, 4)), Rational(1, rng=rng, spatial=(4, 4))])
    X = rng.standard_normal((3, 1, 4, 4))
    assert_rel_error(jacobian(net, X), jacobian_reverse(net, X), 1e-12, "K > P")


@pytest.mark.parametrize("metric", ["euclidean", "true", "empirical"])
def test_factor_and_exact_unchanged(rng, metric):
    """ggn_factor and exact (one forward now) equal the products of the forward-mode Jacobian."""
    net = mlp([2, 6, 3], activation="tanh", seed=8)
    X = rng.standard_normal((5, 2))
    Y = rng.integers(0, 3, 5)
    loss = softmax_cross_entropy()
    Jf = jacobian_forward(net, X)
    out = net.forward(X)
    M = np.asarray(loss.metric(out, Y, metric)).reshape(5, 3, 3)
    F = np.einsum("nkp,nkl,nlq->pq", Jf, M, Jf) / 5
    assert_rel_error(exact(net, X, loss, metric=metric, Y=Y), F, 1e-12, f"exact {metric}")
    B = ggn_factor(net, X, loss, metric=metric, Y=Y)
    assert_rel_error(B.T @ B, F, 1e-12, f"factor {metric}")
    assert_rel_error(ggn_factor(net, X, mse()), Jf.reshape(15, -1) / np.sqrt(5), 1e-12, "mse factor")


def test_jacobian_benchmark_rows(capsys, monkeypatch):
    """The benchmark checks the two modes equal, then prints one row per case (no speed asserted)."""
    from senn_ref.bench import jacobian as bench
    small = [("rational 1-3-1", mlp([1, 3, 1], seed=0), rng_data(4, 1)),
             ("tanh 2-3-2", mlp([2, 3, 2], activation="tanh", seed=0), rng_data(3, 2))]
    monkeypatch.setattr(bench, "cases", lambda quick: small)
    monkeypatch.setattr(bench, "_settings", lambda quick: dict(min_rounds=2, max_rounds=2))
    rows = bench.run(quick=True)
    cap = capsys.readouterr()
    assert len(cap.out.splitlines()) == 2 + len(small) and "[2/2] jacobian tanh 2-3-2" in cap.err
    assert {(r["case"], r["method"]) for r in rows} == {(c[0], m) for c in small
                                                        for m in ("reverse", "forward", "ggn")}
    for r in rows:
        assert r["seconds"] > 0 and (r["ratio"] == 1.0) == (r["method"] == "reverse")


def rng_data(n, d):
    return np.random.default_rng(n * 10 + d).standard_normal((n, d))


def test_output_cotangents_equal_the_full_backward_bitwise(rng):
    """K-FAC's cotangent-only reverse pass (``Layer.backward_input``) gives the very arrays of
    ``net.backward(dY).output_grads``, and the factors are unchanged (11-kfac.md section 3)."""
    from senn_ref.kfac.columns import output_cotangents
    for which in ("numba", "numpy"):
        with backend.using(which):
            for name, net, X in _cases(rng):
                out = net.forward(X)
                dY = rng.standard_normal(out.shape)
                full = net.backward(dY, need_input_grad=True)
                fast = output_cotangents(net, dY)
                assert fast.grads == {} and fast.input_grad is None
                for i, (a, b) in enumerate(zip(fast.output_grads, full.output_grads)):
                    assert np.array_equal(a, b), f"{name} ({which}): layer {i} output cotangent"
                for i, layer in enumerate(net.layers):
                    assert np.array_equal(layer.backward_input(full.output_grads[i]),
                                          layer.backward(full.output_grads[i])[0]), f"{name} layer {i}"
