"""What makes a run's error tables: :class:`TimingSpec`, a named timing
model with its options and, for the model on captured operands, how much
to capture. Built once (from the command line, or by the caller) and handed
to the experiment, which asks it two things: whether it needs operand
pairs captured from the model (:attr:`TimingSpec.needs_operands`), and the
table at some voltages (:meth:`TimingSpec.table`). A new timing model
touches only this package."""
from __future__ import annotations

import dataclasses
from typing import Callable, Dict, Optional, Sequence

import torch

from ..checks import integer
from ..hardware import ArrayConfig
from .event import EventModel
from .layers import LayerTiming
from .operands import Pairs
from .params import TechParams
from .probabilities import TimingOptions, check_voltages
from .table import ErrorTable, make_table

# What users pick (``--timing-model``): a timing model on some operands.
NAMED_MODELS = {
    "event": "event-driven timing of what the register captures, per layer, on operand pairs "
             "captured from the model's layers (needs a model and data; the default)",
    "event-uniform": "event-driven timing on uniform random operand pairs (one table for every layer)",
    "static-uniform": "the first pyvs's static timing (every late bit wrong) on uniform operands",
}
DEFAULT_MODEL = "event"
# How a MAC's erring bits are drawn from the tables (``--injection``).
INJECTIONS = {
    "independent": "each bit at its layer's average rate, independently of the others and of the operands",
    "conditioned": "by the MAC's own operands (its signature: the run of top bits in which the entering partial "
                   "sum and the product differ) and jointly over the bits ('event' only; docs/timing.md)",
}
DEFAULT_INJECTION = "independent"
CUSTOM = "custom"  # hand-made rates (TimingSpec.custom): studies and tests
CALIBRATION_IMAGES = 32
PAIRS_PER_LAYER = 131072  # the onset moves < 1 mV when doubled (docs/timing.md, convergence)
PER_IMAGE = 256  # candidate pairs drawn per calibration image and layer, at least


@dataclasses.dataclass(frozen=True)
class TimingSpec:
    """A timing model and everything it needs besides the hardware.

    Attributes:
        model: a name of :data:`NAMED_MODELS`, or 'custom'.
        options: the physics (technology, adder, design clock, seed;
            :class:`TimingOptions`); its operands follow from the name.
        calibration_images: 'event': the data set's first images whose
            operand pairs are captured (>= 2).
        pairs_per_layer: 'event': operand pairs kept per layer.
        rates: 'custom': voltages (V, list) -> float64 [len(V), W].
        injection: how the op draws a MAC's erring bits, a name of
            :data:`INJECTIONS` ('conditioned' needs the 'event' model).
    """

    model: str = DEFAULT_MODEL
    options: TimingOptions = TimingOptions()
    calibration_images: int = CALIBRATION_IMAGES
    pairs_per_layer: int = PAIRS_PER_LAYER
    rates: Optional[Callable] = None
    injection: str = DEFAULT_INJECTION

    def __post_init__(self):
        if self.injection not in INJECTIONS:
            raise ValueError(f"unknown injection {self.injection!r}; known: {', '.join(INJECTIONS)}")
        if self.injection == "conditioned" and self.model != "event":
            raise ValueError(f"conditioned injection needs the 'event' timing model (operands captured from the "
                             f"model), not {self.model!r}")
        if self.model == CUSTOM:
            if not callable(self.rates):
                raise ValueError("a custom timing spec needs rates: voltages -> float64 [V, W]")
        elif self.model not in NAMED_MODELS:
            raise ValueError(f"unknown timing model {self.model!r}; known: {', '.join(NAMED_MODELS)}")
        elif self.rates is not None or self.options.model != self.model.split("-")[0]:
            raise ValueError(f"the timing model {self.model!r} takes no rates and sets its own options.model")
        if not isinstance(self.options, TimingOptions):
            raise TypeError(f"TimingSpec.options must be TimingOptions, got {type(self.options).__name__}")
        integer(self.calibration_images, "calibration images", 2)
        integer(self.pairs_per_layer, "pairs per layer", 1)

    @classmethod
    def named(cls, model: str = DEFAULT_MODEL, *, calibration_images: int = CALIBRATION_IMAGES,
              pairs_per_layer: int = PAIRS_PER_LAYER, injection: str = DEFAULT_INJECTION,
              **options) -> "TimingSpec":
        """A named model (:data:`NAMED_MODELS`) with ``options``: TechParams
        fields (``vth``, ``guard_band``, ...), ``tech``, ``adder``,
        ``design_freq_ghz``, ``seed``; ``injection``: :data:`INJECTIONS`."""
        if model not in NAMED_MODELS:
            raise ValueError(f"unknown timing model {model!r}; known: {', '.join(NAMED_MODELS)}")
        clash = sorted({"model", "operands"} & set(options))
        if clash:
            raise ValueError(f"the timing model {model!r} sets {clash} itself")
        opts = TimingOptions.from_kwargs(dict(options, model=model.split("-")[0]))
        return cls(model, opts, calibration_images, pairs_per_layer, injection=injection)

    @classmethod
    def custom(cls, rates: Callable) -> "TimingSpec":
        """Hand-made rates: ``rates(voltages)`` -> float64 [len(voltages), W]."""
        return cls(CUSTOM, rates=rates)

    @property
    def needs_operands(self) -> bool:
        """Whether the tables are made from operand pairs captured from the
        model (:meth:`layer_timing`)."""
        return self.model == "event"

    @property
    def candidates_per_image(self) -> int:
        """'event': candidate pairs drawn from each calibration image and
        layer: :data:`PER_IMAGE`, or enough that all images but one hold
        the pairs asked for (the candidates at a forward pass's first row,
        which has no predecessor, are dropped; 131,072 pairs per layer from
        32 images: 4229 per image)."""
        return max(PER_IMAGE, -(-self.pairs_per_layer // (self.calibration_images - 1)))

    @property
    def what_errs(self) -> str:
        """What an error of a bit is, in this model: for messages and titles."""
        return "is captured wrong" if self.options.model == "event" else "misses the clock"

    @property
    def tech(self) -> TechParams:
        return self.options.tech

    def with_tech(self, **overrides) -> "TimingSpec":
        """The same spec with some TechParams fields replaced (e.g. guard_band)."""
        tech = dataclasses.replace(self.tech, **overrides)
        return dataclasses.replace(self, options=dataclasses.replace(self.options, tech=tech))

    def check_voltages(self, voltages, array: ArrayConfig = ArrayConfig()) -> list:
        """The voltages (V) as floats, each within the model's range."""
        return check_voltages(voltages, self.tech, array)

    def describe(self) -> dict:
        """JSON-ready: what results folders and table files record."""
        if self.model == CUSTOM:
            return {"model": "custom probabilities"}
        out = dict(self.options.describe(), model=self.model)
        if self.needs_operands:
            out.pop("operands")  # captured: the table's params say how
            out["calibration"] = {"calibration_images": self.calibration_images,
                                  "pairs_per_layer": self.pairs_per_layer,
                                  "candidates_per_image": self.candidates_per_image,
                                  # pairs across image boundaries (an image's first row after the
                                  # previous image's last); older captures had none
                                  "pairs_across_images": True}
            out["injection"] = self.injection
        return out

    def layer_timing(self, pairs: Dict[str, Pairs], acc_bits: int, provenance: Optional[dict] = None,
                     progress: bool = False) -> LayerTiming:
        """'event': every layer's captured pairs simulated (histograms)."""
        if not self.needs_operands:
            raise ValueError(f"the timing model {self.model!r} does not take captured operand pairs")
        o = self.options
        event = EventModel(acc_bits, o.tech, o.adder, o.design_freq_ghz)
        return LayerTiming.from_pairs(event, pairs, provenance, progress,
                                      keep_pairs=self.injection == "conditioned")

    def table(self, voltages: Sequence[float], array: ArrayConfig, acc_bits: int,
              layers: Optional[LayerTiming] = None, macs: Optional[Dict[str, int]] = None,
              guard_band: Optional[float] = None) -> ErrorTable:
        """The error table at ``voltages`` (V) on ``array``. 'event' takes
        the layers' histograms (:meth:`layer_timing`) and their MACs per
        image; ``guard_band`` overrides the technology's ('event')."""
        volts = sorted(self.check_voltages(voltages, array))
        if self.model == CUSTOM:
            p = torch.as_tensor(self.rates(volts), dtype=torch.float64)
            return ErrorTable(volts, p.tolist(), float(array.freq_ghz), acc_bits, self.describe())
        if self.needs_operands:
            if layers is None or macs is None:
                raise ValueError(f"the timing model {self.model!r} needs operand pairs captured from a model "
                                 "(layer_timing) and its MACs per layer")
            return layers.table(volts, array, macs, dict(self.describe(), v_nominal=array.v_nominal), guard_band)
        if guard_band is not None:
            return self.with_tech(guard_band=guard_band).table(volts, array, acc_bits)
        return make_table(volts, array, acc_bits, **self.options.as_kwargs())


__all__ = ["TimingSpec", "NAMED_MODELS", "DEFAULT_MODEL", "CALIBRATION_IMAGES", "PAIRS_PER_LAYER", "INJECTIONS",
           "DEFAULT_INJECTION"]
