"""The timing model's entry point: per-bit error probabilities of the PE's
accumulator for a voltage grid, a clock and the model's options."""
from __future__ import annotations

import dataclasses
from typing import Sequence, Union

import torch

from ..accumulator import check_width
from ..checks import integer, number
from ..hardware import ACC_BITS, CLOCK_GHZ, ArrayConfig
from .datapath import ADDERS, DEFAULT_ADDER
from .event import EventModel, uniform_histograms
from .operands import Pairs, UniformOperands, operands as as_operands
from .params import DEFAULT, TechParams
from .static import AnalyticModel, cached_uniform_model

V_MAX = 1.2  # volts: calibrated at 0.9 V, the model is not meant for supplies above 1.2 V

_TECH_FIELDS = {f.name for f in dataclasses.fields(TechParams)}


MODELS = ("event", "static")  # the timing models, the default first
UNIFORM_PAIRS = 1 << 17         # uniform operand pairs behind the event model's model-free table


@dataclasses.dataclass(frozen=True)
class TimingOptions:
    """Everything the timing physics takes besides voltage, the array (clock,
    nominal supply) and width. Users pick a named model through
    :class:`pyvs.timing.TimingSpec`, which builds these.

    Attributes:
        model: 'event' (event-driven, history-aware gate-level timing of
            what the register captures, :mod:`.event`; the default) or
            'static' (the first pyvs's statistical static timing, every late
            bit taken as wrong, :mod:`.static`).
        tech: technology and design parameters (:class:`TechParams`).
        operands: 'uniform', or for 'static' an :class:`EmpiricalOperands`,
            for 'event' operand :class:`Pairs` (e.g. captured from a model's
            layers, :mod:`pyvs.dataflow`).
        adder: accumulator adder architecture, a name of
            :data:`pyvs.timing.datapath.ADDERS` ('ripple', the default).
        design_freq_ghz: the clock the design is calibrated for, GHz.
        seed: the seed of the uniform operand pairs ('event').
    """

    model: str = "event"
    tech: TechParams = DEFAULT
    operands: object = dataclasses.field(default_factory=UniformOperands)
    adder: str = DEFAULT_ADDER
    design_freq_ghz: float = CLOCK_GHZ
    seed: int = 0

    @classmethod
    def from_kwargs(cls, options: dict) -> "TimingOptions":
        """From keyword options: ``model``, ``tech`` and/or any TechParams
        field (``vth``, ``guard_band``, ...), ``operands``, ``adder``,
        ``design_freq_ghz``, ``seed``. Unknown names are a ValueError."""
        opts = dict(options)
        model = opts.pop("model", "event")
        if model not in MODELS:
            raise ValueError(f"unknown timing model {model!r}; known: {list(MODELS)}")
        tech = opts.pop("tech", DEFAULT)
        if not isinstance(tech, TechParams):
            raise TypeError(f"tech must be a pyvs.timing.TechParams, got {type(tech).__name__}")
        overrides = {k: opts.pop(k) for k in list(opts) if k in _TECH_FIELDS}
        if overrides:
            tech = dataclasses.replace(tech, **overrides)
        ops = opts.pop("operands", None)
        if isinstance(ops, Pairs):
            if model != "event":
                raise ValueError("operand pairs are for the event-driven timing model (model='event')")
        else:
            ops = as_operands(ops)
            if model == "event" and not isinstance(ops, UniformOperands):
                raise ValueError("the event-driven model takes operand pairs (Pairs) or 'uniform'")
        adder = opts.pop("adder", DEFAULT_ADDER)
        if adder not in ADDERS:
            raise ValueError(f"unknown adder {adder!r}; known: {', '.join(ADDERS)}")
        if model == "static" and adder != DEFAULT_ADDER:
            raise ValueError(f"the static timing model knows the {DEFAULT_ADDER} adder only; "
                             f"time the {adder} adder with the event-driven model")
        design = number(opts.pop("design_freq_ghz", CLOCK_GHZ), "design_freq_ghz", positive=True)
        seed = integer(opts.pop("seed", 0), "seed")
        if opts:
            raise ValueError(f"unknown timing-model options: {sorted(opts)}; known: model, tech, operands, "
                             f"adder, design_freq_ghz, seed and the TechParams fields {sorted(_TECH_FIELDS)}")
        return cls(model, tech, ops, adder, design, seed)

    def as_kwargs(self) -> dict:
        """The keyword options that rebuild these (:meth:`from_kwargs`)."""
        return {"model": self.model, "tech": self.tech, "operands": self.operands, "adder": self.adder,
                "design_freq_ghz": self.design_freq_ghz, "seed": self.seed}

    def describe(self) -> dict:
        """JSON-ready description, as error-table files record it."""
        ops = ({"kind": "pairs", "n": len(self.operands)} if isinstance(self.operands, Pairs)
               else self.operands.describe())
        return {"model": self.model, "tech": self.tech.as_dict(), "operands": ops, "adder": self.adder,
                "design_freq_ghz": self.design_freq_ghz, "seed": self.seed}


def check_voltages(voltages, tech: TechParams = DEFAULT, array: ArrayConfig = ArrayConfig()) -> list:
    """Voltages as a list of floats, each finite, above the threshold voltage
    (the alpha-power law has no meaning at or below Vth) and at most
    :data:`V_MAX`; the array's nominal supply must be in that range too."""
    vth = round(max(tech.vth, tech.vth_die), 6)
    if not vth < array.v_nominal <= V_MAX:
        raise ValueError(f"the nominal supply {array.v_nominal} V is outside the timing model's range "
                         f"(Vth = {vth}, {V_MAX}] V")
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
        if not vth < x <= V_MAX:
            raise ValueError(f"voltage {x} V is outside the timing model's range "
                             f"(Vth = {vth}, {V_MAX}] V" + ("" if tech.corner == "typical" else
                                                              f" of the {tech.corner} corner"))
    return v


def error_probabilities(
    voltages: Union[Sequence[float], torch.Tensor, float],
    array: ArrayConfig = ArrayConfig(),
    acc_bits: int = ACC_BITS,
    **model_options,
) -> torch.Tensor:
    """Per-bit timing-error probability of the PE's W-bit accumulator output.

    Args:
        voltages: supply voltages, volts (each in (Vth, 1.2]).
        array: the clock (GHz) and nominal supply (V) (:class:`pyvs.hardware.ArrayConfig`).
        acc_bits: accumulator width W, bits (8..32).
        **model_options: see :class:`TimingOptions` (the event-driven model
            on uniform operand pairs by default).

    Returns:
        float64 tensor [len(voltages), acc_bits]: entry [i, b] is the
        probability that bit b (LSB = 0) of one MAC's accumulator register
        takes a wrong value ('event') or misses the clock ('static') at
        voltages[i] and the array's clock.
    """
    opts = TimingOptions.from_kwargs(model_options)
    acc_bits = check_width(acc_bits)
    if not isinstance(array, ArrayConfig):
        raise TypeError(f"array must be a pyvs.hardware.ArrayConfig, got {type(array).__name__}")
    v = check_voltages(voltages, opts.tech, array)
    if opts.model == "event":
        return torch.from_numpy(event_probabilities(opts, v, array, acc_bits)[0])
    if isinstance(opts.operands, UniformOperands):
        model = cached_uniform_model(acc_bits, opts.tech, opts.adder, opts.design_freq_ghz)
    else:
        model = AnalyticModel(acc_bits, opts.tech, opts.operands, opts.adder, opts.design_freq_ghz)
    rows = [torch.from_numpy(model.probabilities(x, array)) for x in v]
    return torch.stack(rows).to(torch.float64)


def event_probabilities(opts: TimingOptions, voltages: Sequence[float], array: ArrayConfig, acc_bits: int):
    """(P(wrong), P(late)) of the event-driven model, numpy float64
    [len(voltages), acc_bits] each, on the options' operand pairs (or
    UNIFORM_PAIRS uniform ones)."""
    if isinstance(opts.operands, Pairs):
        model = EventModel(acc_bits, opts.tech, opts.adder, opts.design_freq_ghz)
        h = model.histograms(opts.operands)
    else:
        model, h = uniform_histograms(acc_bits, opts.tech, opts.adder, opts.design_freq_ghz, UNIFORM_PAIRS,
                                      opts.seed)
    return model.probabilities(h, voltages, array)
