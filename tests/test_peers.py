"""``senn-ref bench peers`` (issue 12 item 5): the PyTorch and JAX twins compute senn-ref's
numbers (checked before anything is timed), and the checks fail when the numbers differ.

The PyTorch tests are skipped where torch is not installed (CI does not install it); the JAX
run of the whole benchmark is slow (JAX import and compilation, and JAX's threads before
later tests fork): run with --runslow.
"""
import importlib.util
import os
import sys

import numpy as np
import pytest

from senn_ref.architectures import mlp
from senn_ref.bench import peer_fresh, peer_torch, peers
from senn_ref.fisher.exact import exact
from senn_ref.fisher.matvec import FisherOperator
from senn_ref.losses import mse, softmax_cross_entropy
from senn_ref.natural_gradient import natural_gradient
from senn_ref.testing import relative_error


def _torch():
    torch = peer_torch.load()
    if torch is None:
        pytest.skip("torch not installed (extra [bench])")
    return torch


def _nets(rng):
    """(net, X, Y, loss): a rational MLP with MSE and a tanh MLP with softmax cross-entropy."""
    X1 = rng.standard_normal((7, 1))
    X3 = rng.standard_normal((9, 3))
    return [(mlp([1, 5, 1], seed=1), X1, np.sin(2.0 * X1), mse()),
            (mlp([3, 4, 2], activation="tanh", seed=2), X3, rng.integers(0, 2, 9), softmax_cross_entropy())]


def test_torch_twins_give_senn_refs_numbers(rng):
    """SGD step (loss, updated parameters), GGN-vector product, exact GGN and CG eta from the
    PyTorch twin equal senn-ref's to 1e-10 relative (measured: about 1e-16, eta about 1e-12);
    CG iteration counts within one (6 and 7 here: the last residual is rounding-sized)."""
    torch = _torch()
    for net, X, Y, loss in _nets(rng):
        start = [p.copy() for p in net.named_params().values()]
        value, grads = net.loss_and_grad(X, Y, loss)
        call, their_value, their_new = peer_torch.sgd(net, X, Y, loss.name, 0.01, torch)
        assert abs(their_value - value) <= 1e-10 * abs(value), (their_value, value)
        for key, a, p, g in zip(grads.grads, their_new, start, grads.grads.values()):
            err = relative_error(a, p - 0.01 * g)
            assert err <= 1e-10, (key, err, a, p - 0.01 * g)
        second = float(call().detach())          # the timed call steps its own parameters on
        assert second < their_value, (second, their_value)
        if loss.name != "mse":
            continue
        G = exact(net, X, loss)
        _, their_G = peer_torch.ggn(net, X, torch)
        assert relative_error(their_G, G) <= 1e-10, relative_error(their_G, G)
        v = rng.standard_normal(G.shape[0])
        _, Gv = peer_torch.gvp(net, X, v, 0.1, torch)
        assert relative_error(Gv, G @ v + 0.1 * v) <= 1e-10, relative_error(Gv, G @ v + 0.1 * v)
        assert relative_error(Gv, FisherOperator(net, X, loss, damping=0.1).matvec(v)) <= 1e-10
        u, g, _, info = natural_gradient(net, X, Y, loss, damping=0.1, tol=1e-10)
        _, (value, iterations) = peer_torch.cg_eta(net, X, Y, 0.1, 1e-10, torch)
        assert abs(value - g @ u) <= 1e-10 * (g @ u) and abs(iterations - info.iterations) <= 1, (value, g @ u, iterations)


def test_torch_load_without_torch_returns_none_and_leaves_the_environment(monkeypatch):
    monkeypatch.delitem(sys.modules, "torch", raising=False)
    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "torch" else real(name, *a))
    assert peer_torch.load() is None and "OMP_WAIT_POLICY" not in os.environ


def test_check_names_the_peer_and_the_worst_entries():
    ours = np.arange(6.0).reshape(2, 3)
    peers.check("row", "torch", "GGN", ours * (1 + 1e-12), ours)         # within 1e-10: silent
    wrong = ours.copy()
    wrong[1, 2] += 1e-6
    with pytest.raises(AssertionError, match=r"(?s)row: torch's GGN differs from senn-ref's .*\(1, 2\)"):
        peers.check("row", "torch", "GGN", wrong, ours)
    with pytest.raises(AssertionError, match="shapes"):
        peers.check("row", "jax.jit", "loss", ours.ravel(), ours)


def test_torch_conv_twin_is_checked_against_our_layer():
    """bench kernels' torch conv step is compared with our layer's forward and backward before
    it is timed; a perturbed result is refused."""
    _torch()
    from senn_ref.bench import kernels
    case = ("conv 2->3 6x6", "conv", 4, 2, 3, 6, 3, 1)
    layers, X, dY, _ = kernels._setup(*case[1:], np.random.default_rng(0))
    layer = layers["numba"]
    step = kernels._torch_step("conv", layer, X, dY, 1)        # raises if it differs
    y = step()
    assert np.allclose(y.detach().numpy(), layer.forward(X), rtol=1e-12, atol=0)
    dX, grads = layer.backward(dY)
    outs = [layer.forward(X), dX * 1.001, grads["W"], grads["b"]]
    with pytest.raises(RuntimeError, match="torch's dX differs"):
        kernels._agree("torch", layer, X, dY, outs)


def test_fresh_torch_child_takes_senn_refs_first_sgd_step(tmp_path):
    """The fresh-process torch child (one SGD step of the 1-D task) gives senn-ref's loss and
    parameters; a different expectation is refused."""
    _torch()
    path = str(tmp_path / "task.npz")
    expected = peer_fresh.write_task(path)
    seconds, rep = peer_fresh.run_peer("torch", path)
    assert seconds > 0
    peer_fresh.check_peer("torch", rep, expected)
    loss, params = expected
    with pytest.raises(AssertionError, match="torch's first step differs"):
        peer_fresh.check_peer("torch", rep, (loss, [params[0] * 1.01] + params[1:]))
    with pytest.raises(AssertionError, match="torch's first step differs"):
        peer_fresh.check_peer("torch", rep, (loss * (1 + 1e-8), params))


def test_peers_needs_one_peer_and_prints_dashes_for_a_missing_one(capsys, monkeypatch):
    """Neither jax nor torch: one line naming the extra.  torch alone (jax reported missing):
    the quick table with '-' in the jax columns and torch's ratios."""
    _torch()
    monkeypatch.setattr(peers.peer_jax, "load", lambda: None)
    monkeypatch.setattr(peers.peer_torch, "load", lambda: None)
    with pytest.raises(SystemExit, match=r"needs jax or torch: pip install 'senn-ref\[bench\]'"):
        peers.run(quick=True, fresh=False)
    monkeypatch.undo()
    monkeypatch.setattr(peers.peer_jax, "load", lambda: None)
    monkeypatch.setattr(peers, "compare", lambda contenders, **kw: _one_round(contenders))
    rows = peers.run(quick=True, fresh=False)
    table = [line.split(" | ") for line in capsys.readouterr().out.splitlines() if line.startswith("| ")]
    assert len(rows) == 5 and len(table) == 7 and table[0][2:6] == ["jax.jit", "torch", "jax.jit/senn-ref", "torch/senn-ref"]
    for cells, row in zip(table[2:], rows):
        assert cells[2] == "-" and cells[4] == "-" and cells[5].startswith(f"{row['torch_over_ours']:.3g}x"), cells
        assert "jax.jit_s" not in row and row["torch_s"] > 0


def test_fresh_rows_are_medians_and_paired_ratios(capsys, monkeypatch):
    """The fresh-process rows from given per-round seconds: medians, and each peer's ratio the
    median of its per-round ratios to ours (not the ratio of the medians)."""
    fake = {"cold": [6.0, 8.0, 7.0], "warmup": [1.0, 2.0, 4.0], "warmup_s": [9.0, 9.0, 9.0],
            "torch": [2.8, 1.6, 4.2], "import_s": {"senn-ref": [0.5] * 6, "torch": [2.0, 1.0, 3.0]}}
    monkeypatch.setattr(peers.peer_fresh, "measure", lambda rounds, names: fake)
    cold, warm = peers._fresh_rows(3, {"torch": None})
    assert cold["senn-ref_s"] == 7.0 and cold["torch_s"] == 2.8               # ratio of medians: 0.4
    assert cold["torch_over_ours"] == pytest.approx(2.8 / 6.0, rel=1e-15)
    assert warm["senn-ref_s"] == 2.0 and warm["torch_over_ours"] == pytest.approx(1.05, rel=1e-15)
    assert "jax.jit_s" not in warm
    assert cold["import_s"] == {"senn-ref": 0.5, "torch": 2.0}
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| ")]
    assert lines[0].split(" | ")[1:] == ["7 s", "-", "2.8 s", "-", "0.467x", "3 rounds |"]
    assert lines[1].endswith("| 3 rounds; warm-up itself 9 s |")


@pytest.mark.slow
def test_peers_benchmark_checks_then_times(capsys, monkeypatch):
    """The whole quick table (without the fresh-process rows): every peer column checked equal
    to ours, then one timing round per row."""
    pytest.importorskip("jax")
    monkeypatch.setattr(peers, "compare", lambda contenders, **kw: _one_round(contenders))
    rows = peers.run(quick=True, fresh=False)
    out = capsys.readouterr().out
    assert [r["row"].split(",")[0] for r in rows] == ["exact GGN", "SGD step",
                                                      "CG iteration (GGN-vector product)", "CG eta",
                                                      "conv fwd+bwd N=64 1->8 8x8 k3"]
    assert all(r["jax.jit_s"] > 0 for r in rows)
    assert sum(line.startswith("| ") for line in out.splitlines()) == len(rows) + 2      # header, rule
    assert ["layer-wise_over_ours" in r for r in rows] == [False, True, True, False, False]
    if peer_torch.load() is not None:
        assert all(r["torch_over_ours"] > 0 for r in rows)
    monkeypatch.setattr(peers.peer_torch, "load", lambda: None)           # jax alone: torch columns '-'
    rows = peers.run(quick=True, fresh=False)
    table = [line.split(" | ") for line in capsys.readouterr().out.splitlines() if line.startswith("| ")]
    assert len(table) == len(rows) + 2 and all(c[3] == "-" and c[5] == "-" for c in table[2:])
    assert all("torch_s" not in r and r["jax.jit_s"] > 0 for r in rows)


def _one_round(contenders):
    from senn_ref.bench.timing import compare
    return compare(contenders, baseline="senn-ref", warmup=1, min_rounds=1, max_rounds=1,
                   target_seconds=1e-4)
