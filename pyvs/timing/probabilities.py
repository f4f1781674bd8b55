"""The timing model's entry point: per-bit error probabilities of the PE's
accumulator for a voltage grid, a clock and the model's options."""
from __future__ import annotations

import dataclasses
from typing import Sequence, Union

import torch

from ..accumulator import check_width
from ..checks import number
from .model import AnalyticModel, cached_uniform_model
from .operands import UniformOperands, operands as as_operands
from .params import DEFAULT, TechParams

V_MAX = 1.2  # volts: calibrated at 0.9 V, the model is not meant for supplies above 1.2 V

_TECH_FIELDS = {f.name for f in dataclasses.fields(TechParams)}


@dataclasses.dataclass(frozen=True)
class TimingOptions:
    """Everything the timing model takes besides voltage, clock and width.

    Attributes:
        tech: technology and design parameters (:class:`TechParams`).
        operands: 'uniform' operands or an :class:`EmpiricalOperands`.
        adder: accumulator adder architecture ('ripple').
        design_freq_ghz: the clock the design is calibrated for, GHz.
    """

    tech: TechParams = DEFAULT
    operands: object = dataclasses.field(default_factory=UniformOperands)
    adder: str = "ripple"
    design_freq_ghz: float = 0.7

    @classmethod
    def from_kwargs(cls, options: dict) -> "TimingOptions":
        """From keyword options: ``tech`` and/or any TechParams field
        (``vth``, ``guard_band``, ...), ``operands``, ``adder``,
        ``design_freq_ghz``. Unknown names are a ValueError."""
        opts = dict(options)
        tech = opts.pop("tech", DEFAULT)
        overrides = {k: opts.pop(k) for k in list(opts) if k in _TECH_FIELDS}
        if overrides:
            tech = dataclasses.replace(tech, **overrides)
        ops = as_operands(opts.pop("operands", None))
        adder = opts.pop("adder", "ripple")
        design = number(opts.pop("design_freq_ghz", 0.7), "design_freq_ghz", positive=True)
        if opts:
            raise ValueError(f"unknown timing-model options: {sorted(opts)}; known: tech, operands, "
                             f"adder, design_freq_ghz and the TechParams fields {sorted(_TECH_FIELDS)}")
        return cls(tech, ops, adder, design)

    def describe(self) -> dict:
        """JSON-ready description, as error-table files record it."""
        return {"tech": self.tech.as_dict(), "operands": self.operands.describe(),
                "adder": self.adder, "design_freq_ghz": self.design_freq_ghz}


def check_voltages(voltages, tech: TechParams = DEFAULT) -> list:
    """Voltages as a list of floats, each finite, above the threshold voltage
    (the alpha-power law has no meaning at or below Vth) and at most
    :data:`V_MAX`."""
    if isinstance(voltages, (int, float)) and not isinstance(voltages, bool):
        voltages = [voltages]
    if isinstance(voltages, torch.Tensor):
        voltages = voltages.reshape(-1).tolist()
    try:
        v = [number(x, "voltage") for x in voltages]
    except TypeError:
        raise ValueError(f"the voltage grid {voltages!r} is not a list of numbers") from None
    if not v:
        raise ValueError("the voltage grid is empty")
    for x in v:
        if not tech.vth < x <= V_MAX:
            raise ValueError(f"voltage {x} V is outside the timing model's range "
                             f"(Vth = {tech.vth}, {V_MAX}] V")
    return v


def error_probabilities(
    voltages: Union[Sequence[float], torch.Tensor, float],
    freq_ghz: float = 0.7,
    acc_bits: int = 32,
    **model_options,
) -> torch.Tensor:
    """Per-bit timing-error probability of the PE's W-bit accumulator output.

    Args:
        voltages: supply voltages, volts (each in (Vth, 1.2]).
        freq_ghz: clock frequency, GHz (> 0).
        acc_bits: accumulator width W, bits (8..32).
        **model_options: see :meth:`TimingOptions.from_kwargs`.

    Returns:
        float64 tensor [len(voltages), acc_bits]: entry [i, b] is the
        probability that bit b (LSB = 0) of one MAC's accumulator output
        misses the clock at voltages[i] and freq_ghz.
    """
    opts = TimingOptions.from_kwargs(model_options)
    acc_bits = check_width(acc_bits)
    freq_ghz = number(freq_ghz, "freq_ghz (the clock, GHz)", positive=True)
    v = check_voltages(voltages, opts.tech)
    if isinstance(opts.operands, UniformOperands):
        model = cached_uniform_model(acc_bits, opts.tech, opts.adder, opts.design_freq_ghz)
    else:
        model = AnalyticModel(acc_bits, opts.tech, opts.operands, opts.adder, opts.design_freq_ghz)
    rows = [torch.from_numpy(model.probabilities(x, freq_ghz)) for x in v]
    return torch.stack(rows).to(torch.float64)
