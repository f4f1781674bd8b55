"""Systolic layers, their fault settings, and model conversion.

    voltage -> error table -> op -> layer -> model -> evaluation -> report
                                    ^^^^^^^^^^^^^^
"""
from .config import (FaultConfig, fault_stats, reset_stats, set_faults, set_image_offset,
                     stream_id, systolic_layers, total_stats)
from .convert import convert, from_quantized, is_quantized_model
from .layers import FakeQuant, QuantFunctional, SystolicConv2d, SystolicLayer, SystolicLinear

__all__ = [
    "FaultConfig", "set_faults", "set_image_offset", "reset_stats", "fault_stats", "total_stats",
    "stream_id", "systolic_layers", "convert", "from_quantized", "is_quantized_model",
    "SystolicConv2d", "SystolicLinear", "SystolicLayer", "FakeQuant", "QuantFunctional",
]
