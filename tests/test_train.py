"""End-to-end training: a fixed MLP fits a 1-D target; a small conv net learns the 8x8 digits."""
import numpy as np
import pytest

from senn_ref import losses
from senn_ref.architectures import convnet, mlp
from senn_ref.datasets import digits, half_moons, teacher_regression
from senn_ref.optim import Adam
from senn_ref.train import evaluate, fit


@pytest.mark.parametrize("activation", ["rational", "tanh", "silu"])
def test_mlp_fits_1d_regression(activation):
    # y = sin(2x) + x/2 on 64 points has variance ~1; 16 hidden units fit it to < 1e-3 (measured ~1e-4).
    x = np.linspace(-2, 2, 64)[:, None]
    y = np.sin(2 * x) + 0.5 * x
    net = mlp([1, 16, 1], activation=activation, seed=0)
    hist = fit(net, x, y, losses.mse(), Adam(lr=1e-2), epochs=1500)
    assert hist.train_loss[0] > 0.3
    assert hist.train_loss[-1] < 1e-3, hist.train_loss[-1]


def test_convnet_learns_digits():
    # scikit-learn's bundled 8x8 digits, 1347 train / 450 test, stratified split (~10 s on 2 cores).
    Xtr, ytr, Xte, yte = digits(seed=0)
    net = convnet(seed=0)
    hist = fit(net, Xtr, ytr, losses.softmax_cross_entropy(), Adam(lr=1e-2), epochs=20, batch_size=64,
               seed=0, X_val=Xte, Y_val=yte)
    _, acc = evaluate(net, Xte, yte, losses.softmax_cross_entropy())
    assert acc == hist.val_acc[-1]
    assert acc >= 0.95, hist.val_acc


def test_datasets_shapes_and_determinism():
    Xtr, ytr, Xte, yte = digits(seed=3)
    assert Xtr.shape == (1347, 1, 8, 8) and Xte.shape == (450, 1, 8, 8)
    assert np.bincount(yte).min() >= 44 and 0.0 <= Xtr.min() and Xtr.max() <= 1.0
    assert Xtr.sum() + Xte.sum() == pytest.approx(digits(seed=4)[0].sum() + digits(seed=4)[2].sum())
    a = teacher_regression(seed=1)
    b = teacher_regression(seed=1)
    assert a[0].shape == (50, 1) and a[3].shape == (1000, 1)
    assert np.array_equal(a[1], b[1]) and np.std(a[1]) > 0
    X, y = half_moons(200, noise=0.3, seed=0)
    assert X.shape == (200, 2) and np.bincount(y).tolist() == [100, 100]


def test_fit_rejects_bad_input():
    net = mlp([2, 3, 1], seed=0)
    X = np.zeros((5, 2))
    with pytest.raises(ValueError, match=r"^Y: expected one target per row of X \(5\)"):
        fit(net, X, np.zeros((4, 1)), losses.mse(), Adam())
    with pytest.raises(ValueError, match="batch_size"):
        fit(net, X, np.zeros((5, 1)), losses.mse(), Adam(), batch_size=0)
    with pytest.raises(ValueError, match="X_val"):
        fit(net, X, np.zeros((5, 1)), losses.mse(), Adam(), X_val=X)


def test_fit_checks_everything_before_the_first_update():
    # A bad label in the last batch, a malformed validation set or a non-callable callback
    # must raise before any parameter changes (not after some batches or a whole epoch).
    rng = np.random.default_rng(0)
    X = rng.standard_normal((6, 2))
    last = np.random.default_rng(0).permutation(6)[-1]          # the last example fit visits
    y = np.array([0, 1, 2, 1, 1, 0])
    y_bad = y.copy()
    y_bad[last] = 7
    ce, net = losses.softmax_cross_entropy(), mlp([2, 3, 3], seed=0)
    theta = net.get_flat()
    cases = [(dict(Y=y_bad, batch_size=1), ValueError, r"labels must lie in \[0, 3\)"),
             (dict(Y=y, X_val=np.zeros((5, 7)), Y_val=y[:5]), ValueError, r"X_val: expected shape \(N, 2\)"),
             (dict(Y=y, X_val=np.zeros((5, 2)), Y_val=y[:4]), ValueError, "Y_val"),
             (dict(Y=y, X_val=np.zeros((5, 2)), Y_val=np.full(5, 3)), ValueError, r"labels must lie"),
             (dict(Y=y, callback="print"), TypeError, "callback must be callable"),
             (dict(Y=y, seed=-1), ValueError, "seed")]
    for kwargs, exc, msg in cases:
        with pytest.raises(exc, match=msg):
            fit(net, X, loss=ce, optimizer=Adam(lr=0.1), **kwargs)
        assert np.array_equal(net.get_flat(), theta), kwargs


def test_seed_and_loss_errors_name_the_argument():
    """Issue 11 item 5: seed=-1 and a string for the loss are refused with the argument's name."""
    import senn_ref
    from senn_ref import datasets
    from senn_ref.optim import SGD
    for fn in (datasets.teacher_regression, datasets.half_moons, datasets.digits):
        with pytest.raises(ValueError, match="seed"):
            fn(seed=-1)
    net = senn_ref.mlp([1, 3, 1], seed=0)
    X, Y = np.zeros((4, 1)), np.zeros((4, 1))
    theta = net.get_flat()
    for bad in ("mse", None, losses.mse):
        with pytest.raises(TypeError, match="loss: expected a senn_ref.losses loss object"):
            fit(net, X, Y, bad, SGD(0.1))
    with pytest.raises(TypeError, match=r"losses.mse\(\) rather than the string 'mse'"):
        fit(net, X, Y, "mse", SGD(0.1))
    with pytest.raises(TypeError, match="loss"):
        evaluate(net, X, Y, "mse")
    assert np.array_equal(net.get_flat(), theta)
