"""Exact execution of a hard DAG in rational arithmetic.

The float64 executor (models/dag_executor.py) is the differentiable training path, but a
float64 holds about 16 significant digits: the Mathematics Dataset's answers have up
to 21 (`30828541939819661.6`), and its literals up to 19 digits. Where an answer is
written, the DAG is run again here, on the same arrays, with Fractions:

    node i < D     = sign_i * magnitude_i          (magnitudes exact, e.g. read from the text)
    linear step k  = sum_j    c_kj * node_j        (G_k = 1)
    log step k     = prod_j node_j ** c_kj         (G_k = 0)

with c_kj = round(O[k, j]) over the nodes before step k (the float executor's causal
mask: later entries are never read), G read as linear when G > 0.5, and a node
negative when its V_sign < 0. For integer coefficients and gates in {0, 1} this is the
float executor's formula (its cos(pi * neg) * exp(log) is the signed product), without
rounding and without its clamp at 1e150. A zero node raised to a negative power is a
division by zero: ValueError naming the step, as is a product too large to compute
(dag_plan.power_cost beyond dag_plan.MAX_EXACT_BITS).
"""
from collections.abc import Sequence
from fractions import Fraction

import numpy as np

from data.dagset.dag_plan import MAX_EXACT_BITS, MAX_EXACT_EXPONENT, power_cost


def execute_exact(magnitudes: Sequence[Fraction | int], V_sign, O, G) -> Fraction:
    """The exact value of the last node of one DAG of depth D.

    magnitudes: the D input nodes' exact magnitudes (|x| is used); V_sign (2D,) or (D,),
    O (D, 2D), G (D,): arrays as the float executor takes them (numpy, torch on the CPU,
    or lists), coefficients rounded to integers. ValueError for mismatched shapes, a
    division by zero or a power too large to compute."""
    O = np.asarray(O, dtype=np.float64)
    G = np.asarray(G, dtype=np.float64).reshape(-1)
    V_sign = np.asarray(V_sign, dtype=np.float64).reshape(-1)
    D = G.shape[0]
    if D < 1 or O.shape != (D, 2 * D) or len(magnitudes) != D or V_sign.shape[0] not in (D, 2 * D):
        raise ValueError(f"DAG arrays do not match one depth: {len(magnitudes)} magnitudes, V_sign "
                         f"{V_sign.shape}, O {O.shape}, G {G.shape}; expected D, (2D,) or (D,), (D, 2D), "
                         f"(D,) for one D >= 1")
    if not (np.isfinite(O).all() and np.isfinite(G).all()) or np.abs(O).max() > MAX_EXACT_EXPONENT:
        raise ValueError(f"DAG arrays O and G must be finite, and O within +-{MAX_EXACT_EXPONENT}, to be read "
                         f"as integer coefficients and gates")
    coefficients = np.rint(O).astype(np.int64).tolist()  # hard: each entry its nearest integer
    nodes = [-abs(Fraction(m)) if s < 0 else abs(Fraction(m)) for m, s in zip(magnitudes, V_sign[:D].tolist())]
    for k in range(D):
        operands = [(nodes[j], c) for j, c in enumerate(coefficients[k][:D + k]) if c != 0]
        if G[k] > 0.5:
            nodes.append(sum((c * x for x, c in operands), Fraction(0)))
            continue
        for x, c in operands:
            if x == 0 and c < 0:
                raise ValueError(f"division by zero at DAG step {k}: a zero node has the exponent {c}")
        if any(x == 0 for x, _ in operands):  # a zero factor, and no negative power of one
            nodes.append(Fraction(0))
            continue
        if power_cost((x.numerator, x.denominator, c) for x, c in operands) > MAX_EXACT_BITS:
            raise ValueError(f"DAG step {k} raises numbers to powers too large to compute exactly")
        product = Fraction(1)
        for x, c in operands:
            product *= x ** c
        nodes.append(product)
    return nodes[-1]
