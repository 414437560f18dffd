"""Tests of DAGExecutor (models/dag_executor.py): shapes and dtypes, the causal mask, the
log-domain sign rule, exactness on hand-built DAGs up to the value range the converter
allows, and finite gradients for soft, zero, tiny and huge inputs. Each runs on both
implementations, the C kernel and torch (the `backend` fixture), and the two are checked
against each other.
"""
import math
from fractions import Fraction

import pytest
import torch

from data.dagset.conversion import expression_dag_depth, expression_to_tensors
from models import dag_executor
from models.dag_executor import KERNEL_MAX_DEPTH, MAX_VALUE, DAGExecutor

F64 = torch.float64


def dag(D, mags, signs, rows, gates, dtype=F64):
    """(1, 1, ...) DAG tensors of depth D: initial nodes from mags/signs, step k from
    rows[k] (coefficients over nodes 0..) and gates[k] (1 linear, 0 log); steps past
    the given rows copy the node before them (their gates should be 1)."""
    V_mag = torch.zeros(1, 1, 2 * D, dtype=dtype)
    V_mag[0, 0, :len(mags)] = torch.tensor(mags, dtype=dtype)
    V_sign = torch.ones(1, 1, 2 * D, dtype=dtype)
    V_sign[0, 0, :len(signs)] = torch.tensor(signs, dtype=dtype)
    O = torch.zeros(1, 1, D, 2 * D, dtype=dtype)
    for k, row in enumerate(rows):
        O[0, 0, k, :len(row)] = torch.tensor(row, dtype=dtype)
    for k in range(len(rows), D):
        O[0, 0, k, D + k - 1] = 1.0
    G = torch.tensor(gates, dtype=dtype).view(1, 1, D)
    return V_mag, V_sign, O, G


@pytest.fixture(params=["kernel", "torch"])
def backend(request) -> str:
    return request.param


def run(backend, D, *args, **kwargs) -> float:
    return DAGExecutor(D, backend=backend)(*dag(D, *args, **kwargs)).item()


def random_dag(B, T, D, seed, mag_range=(-4.0, 4.0), coef_scale=2.0, soft=False):
    """Random finite DAG tensors: magnitudes 10**U(mag_range), integer or soft
    coefficients, hard or soft gates and signs."""
    g = torch.Generator().manual_seed(seed)
    V_mag = 10 ** torch.empty(B, T, 2 * D, dtype=F64).uniform_(*mag_range, generator=g)
    O = torch.randn(B, T, D, 2 * D, dtype=F64, generator=g) * coef_scale
    if soft:
        V_sign = torch.empty(B, T, 2 * D, dtype=F64).uniform_(-0.95, 0.95, generator=g)
        G = torch.empty(B, T, D, dtype=F64).uniform_(0.05, 0.95, generator=g)
    else:
        V_sign = torch.randint(0, 2, (B, T, 2 * D), generator=g).to(F64) * 2 - 1
        G = torch.randint(0, 2, (B, T, D), generator=g).to(F64)
        O = O.round()
    return V_mag, V_sign, O, G


# -----------------------------------------------------------------------------
# shapes


def test_output_shape_and_dtype(backend):
    D = 3
    inputs = random_dag(4, 5, D, seed=0)
    out = DAGExecutor(D, backend=backend)(*inputs)
    assert out.shape == (4, 5) and out.dtype == F64
    # float32 inputs run in float64 too: same result as the float64 run of the same values
    inputs32 = tuple(t.float() for t in inputs)
    out32 = DAGExecutor(D, backend=backend)(*inputs32)
    assert out32.shape == (4, 5) and out32.dtype == F64
    assert torch.equal(out32, DAGExecutor(D, backend=backend)(*(t.double() for t in inputs32)))
    # each (b, t) position is an independent DAG
    for b, t in ((0, 0), (3, 4), (2, 1)):
        single = DAGExecutor(D, backend=backend)(*(x[b:b + 1, t:t + 1] for x in inputs))
        assert single.item() == out[b, t].item()


def test_empty_batch(backend):
    D = 3
    inputs = [t[:0].requires_grad_(True) for t in random_dag(2, 5, D, seed=34)]
    out = DAGExecutor(D, backend=backend)(*inputs)
    assert out.shape == (0, 5)
    grads = torch.autograd.grad(out.sum(), inputs)
    assert [g.shape for g in grads] == [x.shape for x in inputs]


def test_batch_of_converted_expressions(backend):
    texts = ["2.5 * 3.0 + 1.0", "-784.1508 - 18.4 / 2.9", "(1-3)**3*(2-5)**2",
             "1/(2/3)", "0*5+1", "-2**2"]
    exact = [Fraction(17, 2), Fraction(-57310933, 72500), Fraction(-72), Fraction(3, 2),
             Fraction(1), Fraction(-4)]
    D = 4
    tensors = [expression_to_tensors(t, D) for t in texts]
    # B=2, T=3 in one call
    V_mag, V_sign, O, G = (torch.cat([x[i] for x in tensors]).view(2, 3, *tensors[0][i].shape[2:])
                           for i in range(4))
    out = DAGExecutor(D, backend=backend)(V_mag, V_sign, O, G)
    assert out.shape == (2, 3)
    for got, e in zip(out.flatten().tolist(), exact):
        assert abs(Fraction(got) - e) <= 1e-12 * abs(e)


def test_mismatched_shapes_raise_value_error():
    D = 3
    V_mag, V_sign, O, G = dag(D, [1, 2], [1, 1], [[1, 1]], [1, 1, 1])
    ex = DAGExecutor(D)
    with pytest.raises(ValueError, match="dag_depth=3"):
        ex(V_mag[..., :5], V_sign, O, G)
    with pytest.raises(ValueError, match="dag_depth=3"):
        ex(V_mag, V_sign, O[..., :2, :], G)
    with pytest.raises(ValueError, match="dag_depth=3"):
        ex(V_mag, V_sign, O[..., :5], G)
    with pytest.raises(ValueError, match="dag_depth=3"):
        ex(V_mag, V_sign, O, G[..., :2])
    with pytest.raises(ValueError, match="dag_depth=4"):
        DAGExecutor(4)(V_mag, V_sign, O, G)
    with pytest.raises(ValueError, match="dag_depth"):
        DAGExecutor(0)


@pytest.mark.parametrize("case", ["v_sign_length_D", "v_sign_length_2", "batch_mismatch", "time_mismatch"])
def test_mismatched_v_sign_and_leading_dims_raise_value_error(case):
    D = 3
    V_mag, V_sign, O, G = dag(D, [1, 2], [1, 1], [[1, 1]], [1, 1, 1])
    if case == "v_sign_length_D":
        V_sign = V_sign[..., :D]
    elif case == "v_sign_length_2":
        V_sign = V_sign[..., :2]
    elif case == "batch_mismatch":
        V_mag = V_mag.expand(2, 1, 2 * D)
        O = O.expand(3, 1, D, 2 * D)
    else:
        V_sign = V_sign.expand(1, 4, 2 * D)
    with pytest.raises(ValueError, match="dag_depth=3"):
        DAGExecutor(D)(V_mag, V_sign, O, G)


# -----------------------------------------------------------------------------
# causal mask


def test_future_nodes_and_intermediate_slots_are_never_read(backend):
    D = 4
    ex = DAGExecutor(D, backend=backend)
    V_mag, V_sign, O, G = random_dag(3, 2, D, seed=1)
    base = ex(V_mag, V_sign, O, G)
    assert torch.isfinite(base).all()
    g = torch.Generator().manual_seed(2)
    future = torch.zeros(D, 2 * D, dtype=torch.bool)
    for k in range(D):
        future[k, D + k:] = True
    for fill in ("random", "nan"):
        O2 = O.clone()
        noise = torch.randn(O.shape, dtype=F64, generator=g) * 1e6
        O2[..., future] = float("nan") if fill == "nan" else noise[..., future]
        assert torch.equal(ex(V_mag, V_sign, O2, G), base)
        V_mag2, V_sign2 = V_mag.clone(), V_sign.clone()
        V_mag2[..., D:] = float("nan") if fill == "nan" else noise[..., 0, :][..., D:]
        V_sign2[..., D:] = float("nan") if fill == "nan" else -V_sign[..., D:]
        assert torch.equal(ex(V_mag2, V_sign2, O, G), base)
    # a past node does change the result
    O3 = O.clone()
    O3[..., D - 1, D + D - 2] += 1.0
    assert not torch.equal(ex(V_mag, V_sign, O3, G), base)


# -----------------------------------------------------------------------------
# values


@pytest.mark.parametrize("coef, expected", [(1, -1.5), (2, 2.25), (3, -3.375), (-1, -2 / 3),
                                            (-2, 4 / 9), (0, 1.0), (4, 5.0625)])
def test_log_domain_sign_of_integer_coefficients(coef, expected, backend):
    got = run(backend, 1, [1.5], [-1], [[coef]], [0])
    assert math.copysign(1.0, got) == math.copysign(1.0, expected)
    assert got == pytest.approx(expected, rel=1e-15, abs=0)


def test_log_domain_sign_counts_negative_factors_with_multiplicity(backend):
    # (-2) * (-3) * 5 = 30 ; (-2)^2 * (-3) = -12 ; (-2) / (-4) = 0.5
    assert run(backend, 3, [2, 3, 5], [-1, -1, 1], [[1, 1, 1]], [0, 1, 1]) == pytest.approx(30, rel=1e-15)
    assert run(backend, 2, [2, 3], [-1, -1], [[2, 1]], [0, 1]) == pytest.approx(-12, rel=1e-15)
    assert run(backend, 2, [2, 4], [-1, -1], [[1, -1]], [0, 1]) == pytest.approx(0.5, rel=1e-15)
    # a negative step result feeding a log step: (2 - 5)^3 = -27
    assert run(backend, 2, [2, 5], [1, 1], [[1, -1], [0, 0, 3]], [1, 0]) == pytest.approx(-27, rel=1e-15)


def test_zero_factors_and_linear_steps(backend):
    assert run(backend, 2, [0, 5], [1, 1], [[1, 1]], [0, 1]) == 0.0
    assert run(backend, 2, [0, 5], [-1, 1], [[3, 1]], [0, 1]) == 0.0
    assert run(backend, 2, [2.5, 4], [1, -1], [[2, 1.5]], [1, 1]) == -1.0
    assert run(backend, 1, [7.25], [-1], [[1]], [1]) == -7.25


def test_no_clamping_inside_range(backend):
    def close(got, exact):
        return abs(Fraction(got) - Fraction(exact)) <= 1e-12 * abs(Fraction(exact))

    assert close(run(backend, 2, [1e50, 1e49], [1, 1], [[1, 1]], [0, 1]), Fraction(10) ** 99)
    assert close(run(backend, 2, [1e50, 1e49], [-1, 1], [[1, 1]], [0, 1]), -Fraction(10) ** 99)
    assert close(run(backend, 2, [1e99, 1e50], [1, 1], [[1, 1]], [0, 1]), Fraction(10) ** 149)
    assert close(run(backend, 2, [1e100, 1e-45], [1, 1], [[1, -1]], [0, 1]), Fraction(10) ** 145)
    assert close(run(backend, 2, [1e-50, 1e-40], [1, 1], [[1, 1]], [0, 1]), Fraction(1, 10 ** 90))
    assert close(run(backend, 2, [1e100, 1e100], [1, 1], [[1, 1]], [1, 1]), 2 * Fraction(10) ** 100)
    # two chained steps: (1e50 * 1e49) / 1e-50 = 1e149
    assert close(run(backend, 3, [1e50, 1e49, 1e-50], [1, 1, 1], [[1, 1], [0, 0, -1, 1]], [0, 0, 1]),
                 Fraction(10) ** 149)
    assert close(run(backend, 1, [9999.9999], [1], [[25]], [0]), Fraction(99999999, 10000) ** 25)
    # beyond the range, values saturate at +-MAX_VALUE (a product at exp(log(MAX_VALUE)))
    assert run(backend, 2, [1e100, 1e100], [1, -1], [[1, 1]], [0, 1]) == pytest.approx(-MAX_VALUE, rel=1e-13)
    assert run(backend, 2, [1e100, 1e60], [1, 1], [[1, 1]], [0, 1]) == pytest.approx(MAX_VALUE, rel=1e-13)
    assert abs(run(backend, 2, [1e100, 1e60], [1, 1], [[1, 1]], [0, 1])) <= MAX_VALUE
    assert run(backend, 2, [1e149, 1e149], [1, 1], [[50, 50]], [1, 1]) == MAX_VALUE
    assert run(backend, 2, [1e149, 1e149], [1, 1], [[-50, -50]], [1, 1]) == -MAX_VALUE
    assert run(backend, 1, [1e200], [-1], [[1]], [1]) == -MAX_VALUE


# -----------------------------------------------------------------------------
# gradients


def assert_finite_grads(backend, V_mag, V_sign, O, G, D):
    inputs = [t.clone().requires_grad_(True) for t in (V_mag, V_sign, O, G)]
    out = DAGExecutor(D, backend=backend)(*inputs)
    assert torch.isfinite(out).all()
    grads = torch.autograd.grad(out.sum(), inputs)
    for name, x, g in zip(("V_mag", "V_sign", "O", "G"), inputs, grads):
        assert g.shape == x.shape
        assert torch.isfinite(g).all(), name
    return grads


def test_gradients_random_inputs(backend):
    grads = assert_finite_grads(backend, *random_dag(64, 4, 4, seed=3), D=4)
    assert all(g.abs().sum() > 0 for g in grads)


def test_gradients_zero_magnitudes(backend):
    V_mag, V_sign, O, G = random_dag(64, 4, 4, seed=4, coef_scale=1.0)
    V_mag[..., :2] = 0.0
    assert_finite_grads(backend, V_mag, V_sign, O, G, D=4)
    # exactly zero everywhere, including a log step with a negative coefficient
    assert_finite_grads(backend, *dag(2, [0, 0], [1, -1], [[1, -1], [1, 0, 1]], [0, 1]), D=2)
    assert_finite_grads(backend, *dag(2, [0, 3], [1, 1], [[2, 1], [0, 0, 1]], [0, 0]), D=2)


def test_gradients_large_coefficients(backend):
    V_mag, V_sign, O, G = dag(3, [1.5, 2, 0.5], [1, -1, 1],
                              [[50, -50, 3], [-50, 1, 0, 2], [0, 50, 0, 1, -1]], [0, 1, 0])
    assert_finite_grads(backend, V_mag, V_sign, O, G, D=3)
    O = torch.full_like(O, -50.0)
    assert_finite_grads(backend, V_mag, V_sign, O, torch.full_like(G, 0.5), D=3)
    assert_finite_grads(backend, *random_dag(64, 4, 3, seed=5, mag_range=(-1, 1), coef_scale=50.0), D=3)


def test_gradients_soft_gates_and_signs(backend):
    assert_finite_grads(backend, *random_dag(64, 4, 4, seed=6, soft=True), D=4)
    assert_finite_grads(backend, *random_dag(64, 4, 4, seed=7, coef_scale=10.0, soft=True), D=4)


def test_gradients_huge_and_tiny_magnitudes(backend):
    for mags in ([1e200, 1e200, 3.0], [1e-320, 1e-320, 3.0], [1e200, 1e-320, 0.0]):
        for rows, gates in (([[1, 1, 1]], [0, 1, 1]), ([[1, -1, 1]], [1, 1, 1]),
                            ([[2, -1, 1], [0, 0, 0, 1]], [0, 0, 1]),
                            ([[0.5, 0.5, 1], [1, 0, 0, -1]], [0.5, 0.3, 1])):
            assert_finite_grads(backend, *dag(3, mags, [1, -1, 0.5], rows, gates), D=3)


def test_gradcheck_soft_values(backend):
    torch.manual_seed(0)
    D = 2
    V_mag = torch.tensor([[[1.3, 2.1, 0.0, 0.0]]], dtype=F64, requires_grad=True)
    V_sign = torch.tensor([[[0.6, -0.3, 1.0, 1.0]]], dtype=F64, requires_grad=True)
    O = torch.tensor([[[[0.7, -1.2, 0.0, 0.0], [0.4, 0.9, 1.3, 0.0]]]], dtype=F64, requires_grad=True)
    G = torch.tensor([[[0.3, 0.6]]], dtype=F64, requires_grad=True)
    assert torch.autograd.gradcheck(DAGExecutor(D, backend=backend), (V_mag, V_sign, O, G), eps=1e-6, atol=1e-7)


def test_gradients_finite_through_tiny_intermediate(backend):
    # node2 = 1e-3**50 * 1e3**-49 = 1e-297; out = 1e3**-50 / node2 = 1e147, and the true
    # d out / d V_mag[0] = -50 * out / 1e-3 = -5e151: finite, though d out / d node2 is not
    V_mag, V_sign, O, G = dag(2, [1e-3, 1e3], [1, 1], [[50, -49], [0, -50, -1]], [0, 0])
    assert run(backend, 2, [1e-3, 1e3], [1, 1], [[50, -49], [0, -50, -1]], [0, 0]) == pytest.approx(1e147, rel=1e-12)
    grads = assert_finite_grads(backend, V_mag, V_sign, O, G, D=2)
    assert grads[0][0, 0, 0].item() == pytest.approx(-5e151, rel=1e-9)
    assert grads[0][0, 0, 1].item() == pytest.approx(-1e144, rel=1e-9)


@pytest.mark.parametrize("mags, row", [([1e-250, 1e-130], [1, -3]), ([1e-299], [-0.5])])
def test_gradients_finite_for_magnitudes_just_above_tiny(mags, row, backend):
    D = 2
    assert_finite_grads(backend, *dag(D, mags, [1] * len(mags), [row], [0, 1]), D=D)


# -----------------------------------------------------------------------------
# the two implementations


def outputs_and_grads(backend, inputs, D):
    leaves = [t.clone().requires_grad_(True) for t in inputs]
    out = DAGExecutor(D, backend=backend)(*leaves)
    weights = torch.linspace(-1, 1, out.numel(), dtype=F64).view_as(out)  # a different gradient per position
    return (out.detach(), *torch.autograd.grad((out * weights).sum(), leaves))


def per_position_error(a, b):
    """max |a - b| per position relative to the largest |entry| of that position: the
    implementations round differently (libm vs torch's exp/log/cos), so entries that are
    sums cancelling to ~0 agree only relative to the terms they came from."""
    scale = torch.maximum(a.abs(), b.abs()).flatten(2).amax(-1) if a.dim() > 2 else torch.maximum(a.abs(), b.abs())
    scale = scale.view(*scale.shape, *[1] * (a.dim() - scale.dim()))
    return ((a - b).abs() / scale.clamp(min=1e-300)).max().item()


@pytest.mark.parametrize("D", [1, 2, 4, 8])
def test_kernel_and_torch_agree(D):
    # soft everything: values and all four gradients
    inputs = random_dag(32, 8, D, seed=10 + D, mag_range=(-2, 2), coef_scale=1.0, soft=True)
    for a, b in zip(outputs_and_grads("kernel", inputs, D), outputs_and_grads("torch", inputs, D)):
        assert a.shape == b.shape and per_position_error(a, b) < 1e-10
    # hard gates and signs, integer coefficients: the values
    inputs = random_dag(32, 8, D, seed=20 + D, mag_range=(-2, 2), coef_scale=1.0)
    kernel = DAGExecutor(D, backend="kernel")(*inputs)
    assert torch.allclose(kernel, DAGExecutor(D, backend="torch")(*inputs), rtol=1e-10, atol=0)


def test_gradcheck_kernel_many_positions():
    V_mag, V_sign, O, G = random_dag(3, 2, 3, seed=30, mag_range=(-1, 1), coef_scale=1.0, soft=True)
    inputs = tuple(t.requires_grad_(True) for t in (V_mag, V_sign, O, G))
    assert torch.autograd.gradcheck(DAGExecutor(3, backend="kernel"), inputs, eps=1e-6, atol=1e-6)


def test_kernel_result_does_not_depend_on_thread_count():
    inputs = random_dag(64, 16, 4, seed=31, soft=True)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = outputs_and_grads("kernel", inputs, 4)
        torch.set_num_threads(max(2, threads))
        many = outputs_and_grads("kernel", inputs, 4)
    finally:
        torch.set_num_threads(threads)
    assert all(torch.equal(a, b) for a, b in zip(one, many))


def test_backend_choice():
    x = random_dag(2, 3, 2, seed=32)
    with pytest.raises(ValueError, match="backend must be"):
        DAGExecutor(2, backend="numpy")
    auto = DAGExecutor(2)(*x)
    assert torch.equal(auto, DAGExecutor(2, backend="kernel")(*x))
    assert DAGExecutor(2).uses_kernel(torch.device("cpu"))
    assert not DAGExecutor(2, backend="torch").uses_kernel(torch.device("cpu"))
    # beyond the kernel's depth, auto runs torch and kernel refuses
    D = KERNEL_MAX_DEPTH + 1
    V_mag, V_sign, O, G = dag(D, [1.5, 2.0], [1, -1], [[1, 1]], [1] * D)
    assert DAGExecutor(D)(V_mag, V_sign, O, G).item() == -0.5
    with pytest.raises(ValueError, match=f"dag_depth <= {KERNEL_MAX_DEPTH}"):
        DAGExecutor(D, backend="kernel")(V_mag, V_sign, O, G)
    with pytest.raises(ValueError, match="beyond the C kernel"):  # the kernel itself refuses too
        dag_executor._kernel_forward(V_mag, V_sign, O, G, keep=False)


def test_kernel_build_failure_falls_back_to_torch_with_a_warning(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setenv("CC", "false")  # a compiler that always fails
    dag_executor.load_kernel.cache_clear()
    try:
        with pytest.warns(UserWarning, match="could not build dag_executor.c"):
            assert dag_executor.load_kernel() is None
        x = random_dag(2, 3, 2, seed=33)
        assert torch.equal(DAGExecutor(2)(*x), DAGExecutor(2, backend="torch")(*x))
        with pytest.raises(ValueError, match="C compiler"):
            DAGExecutor(2, backend="kernel")(*x)
        assert not any(tmp_path.rglob("*.so"))
    finally:
        dag_executor.load_kernel.cache_clear()


def test_kernel_builds_into_the_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    dag_executor.load_kernel.cache_clear()
    try:
        assert dag_executor.load_kernel() is not None
        built = list((tmp_path / "nanogpt-dag").iterdir())
        assert len(built) == 1 and built[0].name.startswith("dag_executor_") and built[0].suffix == ".so"
    finally:
        dag_executor.load_kernel.cache_clear()


# -----------------------------------------------------------------------------
# CUDA


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_exactness():
    texts = ["-784.1508 - 18.4 / 2.9", "9999.9999**4", "0.0001/9999/9999", "(1-3)**3*(2-5)**2"]
    exact = [Fraction(-57310933, 72500), Fraction(99999999, 10000) ** 4,
             Fraction(1, 10000 * 9999 * 9999), Fraction(-72)]
    D = 4
    tensors = [expression_to_tensors(t, D) for t in texts]
    V_mag, V_sign, O, G = (torch.cat([x[i] for x in tensors]).cuda() for i in range(4))
    out = DAGExecutor(D).cuda()(V_mag, V_sign, O, G)
    assert out.device.type == "cuda" and out.dtype == F64 and out.shape == (4, 1)
    cpu = DAGExecutor(D)(*(t.cpu() for t in (V_mag, V_sign, O, G)))
    for got, e in zip(out.cpu().flatten().tolist(), exact):
        assert abs(Fraction(got) - e) <= 1e-9 * abs(e)
    assert torch.allclose(out.cpu(), cpu, rtol=1e-13, atol=0)
    assert all(expression_dag_depth(t) <= D for t in texts)
