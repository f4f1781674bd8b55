"""The timing model's entry point: per-bit error probabilities of the PE's
accumulator for a voltage grid, a clock and the model's options."""
from __future__ import annotations

import dataclasses
from typing import Sequence, Union

import torch

from ..accumulator import check_width
from ..checks import integer, number
from .dynamic import EventModel, uniform_histograms
from .model import AnalyticModel, cached_uniform_model
from .operands import Pairs, UniformOperands, operands as as_operands
from .params import DEFAULT, TechParams

V_MAX = 1.2  # volts: calibrated at 0.9 V, the model is not meant for supplies above 1.2 V

_TECH_FIELDS = {f.name for f in dataclasses.fields(TechParams)}


MODELS = ("event", "static")  # the timing models, the default first
UNIFORM_PAIRS = 1 << 17         # uniform operand pairs behind the event model's model-free table

# What users pick (``--timing-model``): a timing model on some operands.
NAMED_MODELS = {
    "event": "event-driven timing of what the register captures, per layer, on operand pairs "
             "captured from the model's layers (needs a model and data; the default)",
    "event-uniform": "event-driven timing on uniform random operand pairs (one table for every layer)",
    "static-uniform": "the first pyvs's static timing (every late bit wrong) on uniform operands",
}
DEFAULT_MODEL = "event"


def named_model(name: str, options: dict) -> dict:
    """The keyword options of :class:`TimingOptions` for a named model
    (:data:`NAMED_MODELS`) plus ``options`` (technology overrides, seed);
    'event' leaves the operands to the caller (captured pairs)."""
    if name not in NAMED_MODELS:
        raise ValueError(f"unknown timing model {name!r}; known: {list(NAMED_MODELS)}")
    clash = sorted({"model", "operands"} & set(options))
    if clash:
        raise ValueError(f"the timing model {name!r} sets {clash} itself")
    return dict(options, model=name.split("-")[0])


@dataclasses.dataclass(frozen=True)
class TimingOptions:
    """Everything the timing model takes besides voltage, clock and width.

    Attributes:
        model: 'event' (event-driven, history-aware gate-level timing of
            what the register captures, :mod:`.dynamic`; the default) or
            'static' (the first pyvs's statistical static timing, every late
            bit taken as wrong, :mod:`.model`).
        tech: technology and design parameters (:class:`TechParams`).
        operands: 'uniform', or for 'static' an :class:`EmpiricalOperands`,
            for 'event' operand :class:`Pairs` (e.g. captured from a model's
            layers, :mod:`pyvs.dataflow`).
        adder: accumulator adder architecture ('ripple').
        design_freq_ghz: the clock the design is calibrated for, GHz.
        seed: the seed of the uniform operand pairs ('event').
    """

    model: str = "event"
    tech: TechParams = DEFAULT
    operands: object = dataclasses.field(default_factory=UniformOperands)
    adder: str = "ripple"
    design_freq_ghz: float = 0.7
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
        adder = opts.pop("adder", "ripple")
        design = number(opts.pop("design_freq_ghz", 0.7), "design_freq_ghz", positive=True)
        seed = integer(opts.pop("seed", 0), "seed")
        if opts:
            raise ValueError(f"unknown timing-model options: {sorted(opts)}; known: model, tech, operands, "
                             f"adder, design_freq_ghz, seed and the TechParams fields {sorted(_TECH_FIELDS)}")
        return cls(model, tech, ops, adder, design, seed)

    def describe(self) -> dict:
        """JSON-ready description, as error-table files record it."""
        ops = ({"kind": "pairs", "n": len(self.operands)} if isinstance(self.operands, Pairs)
               else self.operands.describe())
        return {"model": self.model, "tech": self.tech.as_dict(), "operands": ops, "adder": self.adder,
                "design_freq_ghz": self.design_freq_ghz, "seed": self.seed}


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
        **model_options: see :class:`TimingOptions` (the event-driven model
            on uniform operand pairs by default).

    Returns:
        float64 tensor [len(voltages), acc_bits]: entry [i, b] is the
        probability that bit b (LSB = 0) of one MAC's accumulator register
        takes a wrong value ('event') or misses the clock ('static') at
        voltages[i] and freq_ghz.
    """
    opts = TimingOptions.from_kwargs(model_options)
    acc_bits = check_width(acc_bits)
    freq_ghz = number(freq_ghz, "freq_ghz (the clock, GHz)", positive=True)
    v = check_voltages(voltages, opts.tech)
    if opts.model == "event":
        return torch.from_numpy(event_probabilities(opts, v, freq_ghz, acc_bits)[0])
    if isinstance(opts.operands, UniformOperands):
        model = cached_uniform_model(acc_bits, opts.tech, opts.adder, opts.design_freq_ghz)
    else:
        model = AnalyticModel(acc_bits, opts.tech, opts.operands, opts.adder, opts.design_freq_ghz)
    rows = [torch.from_numpy(model.probabilities(x, freq_ghz)) for x in v]
    return torch.stack(rows).to(torch.float64)


def event_probabilities(opts: TimingOptions, voltages: Sequence[float], freq_ghz: float, acc_bits: int):
    """(P(wrong), P(late)) of the event-driven model, numpy float64
    [len(voltages), acc_bits] each, on the options' operand pairs (or
    UNIFORM_PAIRS uniform ones)."""
    if isinstance(opts.operands, Pairs):
        model = EventModel(acc_bits, opts.tech, opts.adder, opts.design_freq_ghz)
        h = model.histograms(opts.operands)
    else:
        model, h = uniform_histograms(acc_bits, opts.tech, opts.adder, opts.design_freq_ghz, UNIFORM_PAIRS,
                                      opts.seed)
    return model.probabilities(h, voltages, freq_ghz)
