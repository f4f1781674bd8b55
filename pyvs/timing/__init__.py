"""Timing model: per-bit timing-error probabilities of a PE's accumulator
versus supply voltage and clock frequency.

    voltage -> error table -> op -> layer -> model -> evaluation -> report
    ^^^^^^^^^^^^^^^^^^^^^^

- :mod:`.params`: the technology constants, with their sources.
- :mod:`.datapath`: the MAC's gate netlist (multiplier + accumulator adder).
- :mod:`.operands`: operand distributions (uniform, or int8 histograms).
- :mod:`.model`: the static model (analytic SSTA, every late bit wrong).
- :mod:`.events`, :mod:`.dynamic`: the event-driven model (what the register captures).
- :mod:`.probabilities`: :func:`error_probabilities`, the entry point, and its options.
- :mod:`.montecarlo`: the independent gate-level Monte Carlo check.
- :mod:`.table`: the error-table file format.
"""
from .operands import EmpiricalOperands, UniformOperands
from .params import DEFAULT, TechParams
from .probabilities import (DEFAULT_MODEL, NAMED_MODELS, V_MAX, TimingOptions, check_voltages,
                            error_probabilities, named_model)
from .table import ErrorTable, load_table, make_table, save_table

__all__ = [
    "error_probabilities", "TimingOptions", "check_voltages", "V_MAX", "NAMED_MODELS", "DEFAULT_MODEL",
    "named_model", "TechParams", "DEFAULT",
    "UniformOperands", "EmpiricalOperands", "ErrorTable", "make_table", "load_table", "save_table",
]
