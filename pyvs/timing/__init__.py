"""Timing model: per-bit timing-error probabilities of a PE's accumulator
versus supply voltage and clock frequency.

    voltage -> error table -> op -> layer -> model -> evaluation -> report
    ^^^^^^^^^^^^^^^^^^^^^^

- :mod:`.params`: the technology constants, with their sources.
- :mod:`.datapath`: the MAC's gate netlist (multiplier + accumulator adder).
- :mod:`.operands`: operand distributions (uniform, or int8 histograms).
- :mod:`.model`: the analytic (SSTA) model behind :func:`error_probabilities`.
- :mod:`.montecarlo`: the independent gate-level Monte Carlo check.
- :mod:`.table`: the error-table file format.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Sequence, Union

import torch

from .model import AnalyticModel, _cached_uniform_model
from .operands import EmpiricalOperands, UniformOperands, operands as _operands
from .params import DEFAULT, TechParams
from .table import ErrorTable, load_table, make_table, save_table

__all__ = [
    "error_probabilities", "TechParams", "DEFAULT", "UniformOperands", "EmpiricalOperands",
    "ErrorTable", "make_table", "load_table", "save_table", "check_voltages",
]

_TECH_FIELDS = {f.name for f in dataclasses.fields(TechParams)}


def _split_options(model_options: dict):
    opts = dict(model_options)
    tech = opts.pop("tech", DEFAULT)
    overrides = {k: opts.pop(k) for k in list(opts) if k in _TECH_FIELDS}
    if overrides:
        tech = dataclasses.replace(tech, **overrides)
    ops = _operands(opts.pop("operands", None))
    adder = opts.pop("adder", "ripple")
    design = float(opts.pop("design_freq_ghz", 0.7))
    if opts:
        raise ValueError(f"unknown timing-model options: {sorted(opts)}; known: tech, operands, "
                         f"adder, design_freq_ghz and the TechParams fields {sorted(_TECH_FIELDS)}")
    return tech, ops, adder, design


def check_voltages(voltages, tech: TechParams = DEFAULT) -> list:
    """Voltages as a list of floats, each finite and above the threshold
    voltage (the alpha-power law has no meaning at or below Vth)."""
    if isinstance(voltages, (int, float)):
        voltages = [voltages]
    v = [float(x) for x in (voltages.tolist() if isinstance(voltages, torch.Tensor) else voltages)]
    if not v:
        raise ValueError("the voltage grid is empty")
    for x in v:
        if not math.isfinite(x) or x <= tech.vth:
            raise ValueError(f"voltage {x} V is not above the threshold voltage Vth = {tech.vth} V")
    return v


def error_probabilities(
    voltages: Union[Sequence[float], torch.Tensor, float],
    freq_ghz: float = 0.7,
    acc_bits: int = 32,
    **model_options,
) -> torch.Tensor:
    """Per-bit timing-error probability of the PE's W-bit accumulator output.

    Args:
        voltages: supply voltages, volts (each > Vth).
        freq_ghz: clock frequency, GHz (> 0).
        acc_bits: accumulator width W, bits (8..32).
        **model_options: ``tech`` (a :class:`TechParams`) and/or any of its
            fields (``vth``, ``alpha``, ``guard_band``, ``sigma_gate``, ...);
            ``operands`` ('uniform' or an :class:`EmpiricalOperands`);
            ``adder`` ('ripple'); ``design_freq_ghz`` (the clock the design
            is calibrated for, default 0.7 GHz).

    Returns:
        float64 tensor [len(voltages), acc_bits]: entry [i, b] is the
        probability that bit b (LSB = 0) of one MAC's accumulator output
        misses the clock at voltages[i] and freq_ghz.
    """
    tech, ops, adder, design = _split_options(model_options)
    if not (isinstance(acc_bits, int) and 8 <= acc_bits <= 32):
        raise ValueError(f"acc_bits must be an integer between 8 and 32, got {acc_bits!r}")
    if not (math.isfinite(freq_ghz) and freq_ghz > 0):
        raise ValueError(f"freq_ghz must be a positive frequency in GHz, got {freq_ghz!r}")
    if not (math.isfinite(design) and design > 0):
        raise ValueError(f"design_freq_ghz must be positive, got {design!r}")
    v = check_voltages(voltages, tech)
    if isinstance(ops, UniformOperands):
        model = _cached_uniform_model(acc_bits, tech, adder, design)
    else:
        model = AnalyticModel(acc_bits, tech, ops, adder, design)
    rows = [torch.from_numpy(model.probabilities(x, freq_ghz)) for x in v]
    return torch.stack(rows).to(torch.float64)
