"""Timing model: per-bit timing-error probabilities of a PE's accumulator
versus supply voltage, on the array's clock.

    voltage -> error table -> op -> layer -> model -> evaluation -> report
    ^^^^^^^^^^^^^^^^^^^^^^

- :mod:`.spec`: :class:`TimingSpec`, the one object users build (a named
  model, its options, how much to capture), and the tables it makes.
- :mod:`.params`: the technology constants, with their sources.
- :mod:`.datapath`: the MAC's gate netlist and the longest-path walk.
- :mod:`.clock`: when the register captures (the clock formula).
- :mod:`.operands`: operand distributions (uniform, int8 histograms, pairs).
- :mod:`.static`: the static model (analytic SSTA, every late bit wrong).
- :mod:`.waveforms`, :mod:`.event`: the event-driven model (gate-level
  waveforms with history; what the register captures).
- :mod:`.layers`: per-layer tables from captured operand pairs.
- :mod:`.probabilities`: :func:`error_probabilities`, the physics entry point.
- :mod:`.montecarlo`: the independent gate-level Monte Carlo check.
- :mod:`.table`: the error-table file format.
"""
from .layers import LayerTiming
from .operands import EmpiricalOperands, Pairs, UniformOperands
from .params import DEFAULT, TechParams
from .probabilities import V_MAX, TimingOptions, check_voltages, error_probabilities
from .spec import DEFAULT_MODEL, NAMED_MODELS, TimingSpec
from .table import ErrorTable, load_table, make_table, save_table

__all__ = [
    "TimingSpec", "NAMED_MODELS", "DEFAULT_MODEL", "error_probabilities", "TimingOptions", "check_voltages",
    "V_MAX", "TechParams", "DEFAULT", "UniformOperands", "EmpiricalOperands", "Pairs", "LayerTiming",
    "ErrorTable", "make_table", "load_table", "save_table",
]
