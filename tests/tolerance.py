"""Tolerances derived from floating-point round-off, for comparisons that are exact in exact arithmetic.

Two computations that agree mathematically but round differently (a flow and its inverse, jit and eager,
permuted inputs through attention, one device and four, a float32 file and a float64 recomputation, ...)
need a tolerance that is

* well above their round-off, so that the test fails only when the code is wrong, on any machine: the
  rounding changes from one CPU to another (SIMD width changes the order of a reduction, FMA contraction,
  XLA's fusion choices, the few-ulp approximations of exp/tanh/log), so a tolerance at the edge of the
  round-off measured on one machine fails on another; and
* far below what a real mistake changes (a wrong formula, a wrong inverse, a missing term are off by O(1)
  relative, orders of magnitude above round-off), so that the test still checks what it says.

``roundoff`` is the usual first-order bound of a chain of floating-point operations: every operation on
the dependency path adds at most one relative rounding of its result, so after ``ops`` of them the error is at
most ``ops · ε · scale``, with ``scale`` the magnitude of the values being rounded (the largest intermediate,
not only the result: an error made at |z| = 50 stays at that absolute size when z is mapped back to O(1)).
``tolerance`` multiplies it by a safety factor (``SAFETY`` = 10): the project's rule is that no tolerance
sits closer than 10x to the round-off it covers. Each call site states ``ops``/``scale`` and the worst
discrepancy measured, so the margin can be checked by reading the test. Where the depth cannot be counted
(boosts that magnify the rounding by a Lorentz factor, a network), ``ops`` is an effective depth: the measured
worst case in units of ε·scale, rounded up, and the call site says so.
"""

from __future__ import annotations

import numpy as np

# Why 10: ``roundoff`` is a model of the rounding, fitted to the worst case measured on one machine and a
# sample of inputs. Another CPU (other vector width, other reduction order, other libm) or an input not
# sampled can round a few times worse; one order of magnitude covers that, and is the project's rule, while
# leaving the tolerance orders of magnitude below the error of a real bug.
SAFETY = 10.0


def eps(dtype) -> float:
    """Machine epsilon of a floating dtype: the spacing of the numbers just above 1.0 (twice the largest
    relative rounding error of one correctly rounded operation). float32: 1.19e-7, float64: 2.22e-16."""
    return float(np.finfo(np.dtype(dtype)).eps)


def roundoff(dtype, ops: float = 1, scale=1.0):
    """First-order bound of the absolute round-off of a computation in ``dtype``: ``ops · eps(dtype) · scale``.

    ``ops``: the number of rounded operations on the dependency path (the depth of the computation: layers,
    blocks, summed terms, solver steps), each contributing at most one relative rounding. ``scale``: the
    magnitude of the values rounded along the way (1.0 for a relative bound: multiply the result by |value|,
    or pass it as ``rtol``); an array gives one bound per element (compare with
    ``np.testing.assert_array_less``: ``assert_allclose`` takes a scalar ``atol`` only).
    """
    return float(ops) * eps(dtype) * (scale if isinstance(scale, np.ndarray) else float(scale))


def tolerance(dtype, ops: float = 1, scale=1.0, safety: float = SAFETY):
    """A test tolerance: ``safety`` (at least 10, see ``SAFETY``) times ``roundoff(dtype, ops, scale)``."""
    if safety < SAFETY:
        raise ValueError(f"a tolerance within {safety}x of the round-off fails on other machines")
    return safety * roundoff(dtype, ops, scale)
