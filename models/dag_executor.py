"""The differentiable float64 DAG executor.

Nodes 0..D-1 hold the input values; step k writes node D+k as a combination of the
nodes before it (the causal mask: it never reads a node not yet computed):

    linear = sum_j O[k, j] * v_j                    signed values   (G=1: + -)
    log    = sum_j O[k, j] * log|v_j|               log-magnitudes  (G=0: * / **)
    neg    = sum_j O[k, j] * n_j,  n_j = (1 - sign_j) / 2
    v      = G * linear + (1 - G) * cos(pi * neg) * exp(log)

cos(pi * neg) is exactly (-1)^(number of negative factors, with multiplicity) for
integer coefficients and +-1 signs, so (-2)**2 is positive, and it is smooth between.

The forward and backward passes are written out by hand: autograd over the same
formula records ~10 tiny ops per coefficient. There are two implementations of them.
On the CPU, dag_executor.c runs a position's whole DAG at a time; it is compiled with
the system's C compiler on first use and cached. Elsewhere (CUDA), or where no compiler
works, the torch code below runs over whole (nodes, B*T) slabs. tests/test_executor.py
checks both, against each other and with gradcheck.
"""
import ctypes
import functools
import hashlib
import math
import os
import shlex
import subprocess
import warnings
from pathlib import Path

import torch
import torch.nn as nn

# Node values are kept within +-1e150 and the log domain's exponent below log(1e150):
# well beyond the 1e100 that the converter accepts, so exact DAGs are never clamped,
# while any finite input still gives finite values and gradients.
MAX_VALUE = 1e150
LOG_LIMIT = math.log(MAX_VALUE)
# log|x| used for x == 0 and for |x| < TINY, below the converter's range: exp(c * ZERO_LOG)
# underflows to exactly 0 for any coefficient c >= 0.01 even beside factors up to
# e^LOG_LIMIT, so a zero factor zeroes a product; and 1/|x| <= 1e100 keeps log's
# gradient finite.
ZERO_LOG = -1e5
TINY = 1e-100
_ZERO_LOG = torch.tensor(ZERO_LOG, dtype=torch.float64)  # torch.where(..., out=) takes tensors only
_ZERO = torch.tensor(0.0, dtype=torch.float64)


def _safe_log(mag: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
    return torch.where(mag > TINY, torch.log(mag.clamp(min=TINY)), _ZERO_LOG.to(mag.device), out=out)


def _run(mag: torch.Tensor, sign: torch.Tensor, O: torch.Tensor, G: torch.Tensor):
    """Execute all steps: mag, sign (D, N), O (D, 2D, N), G (D, N) -> X (3, 2D, N), the
    signed value, log-magnitude and is-negative rows of every node, and for backward the
    linear, log and neg sums of every step (D, 3, N) and its value before clamping (D, N)."""
    D, N = G.shape
    X = mag.new_empty(3, 2 * D, N)  # every row is written below
    torch.mul(sign, mag, out=X[0, :D])
    _safe_log(mag, out=X[1, :D])
    torch.mul(1 - sign, 0.5, out=X[2, :D])
    sums = mag.new_empty(D, 3, N)
    raw = mag.new_empty(D, N)
    for k in range(D):
        n = D + k
        # node by node, in place and in a fixed order, so a position's result does not
        # depend on the batch it is in (a vectorized sum may reassociate)
        torch.mul(O[k, 0], X[:, 0], out=sums[k])  # (3, N)
        for j in range(1, n):
            sums[k].addcmul_(O[k, j], X[:, j])
        linear, log_sum, neg_sum = sums[k]
        g = G[k]
        log_c = log_sum.clamp(max=LOG_LIMIT)
        product = torch.cos(math.pi * neg_sum) * torch.exp(log_c)
        # not product + g * (linear - product): with g = 1 that loses linear's low bits
        torch.addcmul(g * linear, 1 - g, product, out=raw[k])
        value = torch.clamp(raw[k], -MAX_VALUE, MAX_VALUE, out=X[0, n])
        # a pure log step keeps its exact log-magnitude: no exp/log round trip
        torch.where(g == 0, log_c, _safe_log(value.abs()), out=X[1, n])
        torch.lt(value, 0, out=X[2, n])
    return X, sums, raw


def _partials(X: torch.Tensor, sums: torch.Tensor, raw: torch.Tensor, G: torch.Tensor) -> torch.Tensor:
    """What backward needs of every step at once (D, 6, N): the derivatives of the value by
    the linear, log and neg sums and by the gate, of the log row by the value, and of the
    log row by the log sum (a pure log step's log row is its log sum)."""
    D, N = G.shape
    linear, log_sum, neg_sum = sums.unbind(1)  # (D, N) each
    value = X[0, D:]
    magnitude = torch.exp(log_sum.clamp(max=LOG_LIMIT))
    angle = math.pi * neg_sum
    product = torch.cos(angle) * magnitude
    inside = torch.eq(value, raw, out=torch.empty_like(raw))  # clamp passes gradient here only
    log_inside = log_sum <= LOG_LIMIT
    pure_log = G == 0
    p = raw.new_empty(D, 6, N)
    torch.mul(inside, G, out=p[:, 0])
    d_value_d_product = inside - p[:, 0]  # inside * (1 - G)
    torch.mul(d_value_d_product * product, log_inside, out=p[:, 1])
    torch.mul(d_value_d_product * torch.sin(angle), magnitude * -math.pi, out=p[:, 2])
    torch.mul(inside, linear - product, out=p[:, 3])
    torch.where(~pure_log & (value.abs() > TINY), value.reciprocal(), _ZERO.to(raw.device), out=p[:, 4])
    torch.logical_and(pure_log, log_inside, out=p[:, 5])
    return p


def _positions_last(t: torch.Tensor, k: int) -> torch.Tensor:
    """(..., *last k dims) -> (*last k dims, N), N = the product of the leading dims:
    each row the executor reads is then contiguous over the N positions."""
    trailing = t.shape[t.dim() - k:]
    # a 2-D transpose copies faster than the equivalent movedim
    return t.reshape(-1, trailing.numel()).t().contiguous().view(*trailing, -1)


def _prepare(V_mag, V_sign, O, G) -> tuple[torch.Tensor, ...]:
    D = G.shape[-1]
    v = _positions_last(V_mag[..., :D], 1)  # (D, N)
    mag = v.abs().clamp(max=MAX_VALUE)
    return v, mag, _positions_last(V_sign[..., :D], 1), _positions_last(O, 2), _positions_last(G, 1)


class _Execute(torch.autograd.Function):
    """Float64 (V_mag (..., 2D), V_sign (..., 2D), O (..., D, 2D), G (..., D)) -> the
    value of the last node (...). Layout changes happen in here, outside autograd's
    graph: recorded, they cost as much as the execution itself."""

    @staticmethod
    def forward(ctx, V_mag, V_sign, O, G):
        v, mag, sign, O_t, G_t = _prepare(V_mag, V_sign, O, G)
        X, sums, raw = _run(mag, sign, O_t, G_t)
        ctx.save_for_backward(v, sign, O_t, G_t, X, sums, raw)
        ctx.lead = G.shape[:-1]
        return X[0, -1].reshape(ctx.lead)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out):
        v, sign, O, G, X, sums, raw = ctx.saved_tensors
        D, N = G.shape
        partials = _partials(X, sums, raw, G)  # (D, 6, N)
        dX = X.new_zeros(3, 2 * D, N)  # gradient w.r.t. every node's three rows
        dX[0, -1] = grad_out.reshape(N)
        dO = torch.empty_like(O)
        dG = torch.empty_like(G)
        for k in reversed(range(D)):
            n = D + k
            d_value = torch.addcmul(dX[0, n], dX[1, n], partials[k, 4])
            d = d_value * partials[k, :3]  # d linear, d log_sum, d neg_sum (3, N)
            d[1] += dX[1, n] * partials[k, 5]
            torch.mul(d_value, partials[k, 3], out=dG[k])
            # in place, as in _run: no temporaries of (n, N) or (3, n, N)
            torch.mul(X[0, :n], d[0], out=dO[k, :n])  # (n, N)
            dO[k, :n].addcmul_(X[1, :n], d[1]).addcmul_(X[2, :n], d[2])
            dO[k, n:] = 0.0  # future nodes are never read
            dX[:, :n].addcmul_(d[:, None], O[k, None, :n])
        # input nodes: v = sign * mag, L = safe_log(mag), neg = (1 - sign) / 2, and
        # mag = clamp(|V_mag|, max=MAX_VALUE)
        mag = v.abs().clamp(max=MAX_VALUE)
        d_mag = dX[0, :D] * sign + torch.where(mag > TINY, dX[1, :D] / mag.clamp(min=TINY), 0.0)
        d_mag = d_mag * torch.sign(v) * (v.abs() <= MAX_VALUE)
        d_sign = dX[0, :D] * mag - dX[2, :D] / 2
        lead = ctx.lead

        def node_grad(d: torch.Tensor) -> torch.Tensor:  # (D, N) -> (..., 2D), 0 for the unread half
            out = d.new_zeros(N, 2 * D)
            out[:, :D] = d.t()
            return out.reshape(*lead, 2 * D)

        return (node_grad(d_mag), node_grad(d_sign), dO.view(2 * D * D, N).t().reshape(*lead, D, 2 * D),
                dG.t().reshape(*lead, D))


_KERNEL_SOURCE = Path(__file__).with_suffix(".c")
# -ffp-contract=off: every product and sum rounded on its own, whatever the compiler and CPU
_KERNEL_FLAGS = ("-O3", "-shared", "-fPIC", "-fopenmp", "-ffp-contract=off")
_LIMITS = (MAX_VALUE, LOG_LIMIT, ZERO_LOG, TINY)
KERNEL_MAX_DEPTH = 64  # MAX_DEPTH in dag_executor.c: its per-position scratch is on the stack


@functools.cache
def load_kernel() -> ctypes.CDLL | None:
    """The compiled dag_executor.c, built once per source version into
    $XDG_CACHE_HOME/nanogpt-dag (default ~/.cache/nanogpt-dag) with $CC (default cc);
    None, with a warning, if it cannot be built."""
    source = _KERNEL_SOURCE.read_bytes()
    key = hashlib.sha256(source + " ".join(_KERNEL_FLAGS).encode()).hexdigest()[:16]
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "nanogpt-dag"
    lib = cache / f"dag_executor_{key}.so"
    if not lib.exists():
        tmp = lib.with_name(f"{lib.name}.{os.getpid()}.tmp")  # parallel builds (DDP ranks) each rename atomically
        try:
            cache.mkdir(parents=True, exist_ok=True)
            compiler = shlex.split(os.environ.get("CC", "cc"))
            build = subprocess.run([*compiler, *_KERNEL_FLAGS, str(_KERNEL_SOURCE), "-o", str(tmp), "-lm"],
                                   capture_output=True, text=True)
            if build.returncode != 0:
                raise OSError(build.stderr.strip().splitlines()[-1] if build.stderr.strip() else "compiler failed")
            os.replace(tmp, lib)
        except OSError as e:
            warnings.warn(f"DAG executor: could not build {_KERNEL_SOURCE.name} ({e}); the CPU runs the slower "
                          f"torch implementation")
            return None
    kernel = ctypes.CDLL(str(lib))
    ptr, n = ctypes.c_void_p, ctypes.c_long
    limits = [ctypes.c_double] * 4
    kernel.dag_forward.argtypes = [n, ctypes.c_int, *[ptr] * 7, ctypes.c_int, *limits]
    kernel.dag_backward.argtypes = [n, ctypes.c_int, *[ptr] * 11, ctypes.c_int, *limits]
    return kernel


def _ptr(t: torch.Tensor | None) -> int | None:
    return None if t is None else t.data_ptr()


def _check(status: int, D: int) -> None:
    if status != 0:  # the kernel refuses a depth its stack scratch cannot hold, and writes nothing
        raise ValueError(f"dag_depth={D} is beyond the C kernel's {KERNEL_MAX_DEPTH}")


def _kernel_forward(V_mag, V_sign, O, G, keep: bool):
    """dag_executor.c's forward over contiguous float64 CPU tensors: the output (...) and,
    when keep, the per-position node rows and tape that backward reads."""
    D = G.shape[-1]
    N = G.numel() // D
    out = G.new_empty(G.shape[:-1])
    X = G.new_empty(N, 6 * D) if keep else None
    tape = G.new_empty(N, 6 * D) if keep else None
    status = load_kernel().dag_forward(N, D, *map(_ptr, (V_mag, V_sign, O, G, out, X, tape)),
                                       torch.get_num_threads(), *_LIMITS)
    _check(status, D)
    return out, X, tape


class _KernelExecute(torch.autograd.Function):
    """_Execute's contract, run by dag_executor.c; inputs contiguous float64 on the CPU."""

    @staticmethod
    def forward(ctx, V_mag, V_sign, O, G):
        out, X, tape = _kernel_forward(V_mag, V_sign, O, G, keep=True)
        ctx.save_for_backward(V_mag, V_sign, O, G, X, tape)
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out):
        V_mag, V_sign, O, G, X, tape = ctx.saved_tensors
        D = G.shape[-1]
        grads = [torch.empty_like(t) for t in (V_mag, V_sign, O, G)]  # every entry is written
        tensors = (V_mag, V_sign, O, G, X, tape, grad_out.contiguous(), *grads)  # held: C reads their memory
        status = load_kernel().dag_backward(G.numel() // D, D, *map(_ptr, tensors), torch.get_num_threads(), *_LIMITS)
        _check(status, D)
        return tuple(grads)


class DAGExecutor(nn.Module):
    """Differentiable float64 executor of DAG tensors of depth D.

    forward(V_mag (..., 2D), V_sign (..., 2D), O (..., D, 2D), G (..., D)) -> (...) the
    value of the last node, in float64, on the inputs' device. Only the first D entries
    of V_mag/V_sign are read; |V_mag| is used and clamped to MAX_VALUE.
    """

    def __init__(self, dag_depth: int, backend: str = "auto"):
        super().__init__()
        if dag_depth < 1:
            raise ValueError(f"dag_depth must be >= 1, got {dag_depth}")
        if backend not in ("auto", "kernel", "torch"):
            raise ValueError(f"backend must be 'auto', 'kernel' or 'torch', got {backend!r}")
        self.dag_depth = dag_depth
        # auto: dag_executor.c on the CPU where it builds, else torch; kernel: only the C
        # kernel (an error on other devices); torch: always the torch implementation
        self.backend = backend

    def uses_kernel(self, device: torch.device) -> bool:
        """Whether inputs on `device` run on the C kernel (else the torch implementation)."""
        if self.backend == "kernel":
            if device.type != "cpu" or self.dag_depth > KERNEL_MAX_DEPTH or load_kernel() is None:
                raise ValueError(f"backend='kernel' needs CPU inputs (got {device}), dag_depth <= "
                                 f"{KERNEL_MAX_DEPTH} (got {self.dag_depth}) and a C compiler that builds it")
            return True
        return (self.backend == "auto" and device.type == "cpu" and self.dag_depth <= KERNEL_MAX_DEPTH
                and load_kernel() is not None)

    def forward(self, V_mag: torch.Tensor, V_sign: torch.Tensor, O: torch.Tensor, G: torch.Tensor) -> torch.Tensor:
        D = self.dag_depth
        lead = G.shape[:-1]
        if (V_mag.shape != (*lead, 2 * D) or V_sign.shape != (*lead, 2 * D)
                or O.shape != (*lead, D, 2 * D) or G.shape != (*lead, D)):
            raise ValueError(
                f"DAG tensors do not match dag_depth={D}: V_mag {tuple(V_mag.shape)}, V_sign "
                f"{tuple(V_sign.shape)}, O {tuple(O.shape)}, G {tuple(G.shape)}; expected (..., {2 * D}), "
                f"(..., {2 * D}), (..., {D}, {2 * D}), (..., {D}) with the same leading dims")
        inputs = tuple(t.to(torch.float64) for t in (V_mag, V_sign, O, G))
        grad = torch.is_grad_enabled() and any(t.requires_grad for t in inputs)
        if self.uses_kernel(G.device):
            inputs = tuple(t.contiguous() for t in inputs)
            return _KernelExecute.apply(*inputs) if grad else _kernel_forward(*inputs, keep=False)[0]
        if grad:
            return _Execute.apply(*inputs)
        _, mag, sign, O_t, G_t = _prepare(*inputs)  # no backward to prepare for
        return _run(mag, sign, O_t, G_t)[0][0, -1].reshape(lead)
