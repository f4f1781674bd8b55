"""Systolic layers, their fault settings, and model conversion.

    voltage -> error table -> op -> layer -> model -> evaluation -> report
                                    ^^^^^^^^^^^^^^

- :mod:`.config`: :class:`FaultConfig`, what the array does wrong and protects.
- :mod:`.int8`: the int8 runtime's roundings (quantize, requantize, QNNPACK add).
- :mod:`.probe`: the forward pass's image offset and what it measured.
- :mod:`.layers`: :class:`SystolicConv2d`, :class:`SystolicLinear`, :func:`set_faults`,
  :func:`set_schedule` (each layer at its own supply), :func:`layer_kinds`.
- :mod:`.surgery`, :mod:`.convert`, :mod:`.ptq`: putting a model on the array.
"""
from .config import FaultConfig
from .convert import convert, from_quantized, is_quantized_model
from .int8 import FakeQuant, QuantFunctional
from .layers import (SystolicConv2d, SystolicLayer, SystolicLinear, layer_kinds, set_faults, set_schedule, stream_id,
                     systolic_layers)
from .probe import Probe, forward_pass

__all__ = [
    "FaultConfig", "set_faults", "set_schedule", "layer_kinds", "systolic_layers", "stream_id", "Probe", "forward_pass",
    "convert", "from_quantized", "is_quantized_model",
    "SystolicConv2d", "SystolicLinear", "SystolicLayer", "FakeQuant", "QuantFunctional",
]
