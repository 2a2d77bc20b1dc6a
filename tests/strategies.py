"""Hypothesis strategies shared by the convolution and kernel tests."""
from hypothesis import strategies as st


@st.composite
def conv_geometry(draw, max_n: int = 4, max_c: int = 3, max_hw: int = 9):
    """(N, C, H, W, kernel, stride, padding) with kernel sizes 1-4, strides 1-3, paddings 0-2
    and the kernel fitting inside the padded input."""
    kh, kw = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    sh, sw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    ph, pw = draw(st.integers(0, 2)), draw(st.integers(0, 2))
    H = max(draw(st.integers(1, max_hw)), kh - 2 * ph)
    W = max(draw(st.integers(1, max_hw)), kw - 2 * pw)
    N, C = draw(st.integers(1, max_n)), draw(st.integers(1, max_c))
    return N, C, H, W, (kh, kw), (sh, sw), (ph, pw)
