"""The error-table file: per-bit error probabilities on a voltage grid, with
the parameters that produced them. JSON, so that it is readable and diffable:

    {"format": "pyvs-error-table", "version": 2,
     "freq_ghz": 0.7, "acc_bits": 32,
     "voltages": [0.5, 0.55, ...],            # volts, strictly increasing
     "p": [[p_0, ..., p_31], ...],           # one row per voltage, LSB first
     "layers": {"features.0.0": [[...], ...], ...},   # optional: per-layer rows
     "params": {...}}                         # model, TechParams and options

Version 2 adds the per-layer tables of the event-driven model (each layer's
own operands); "p" is then their MAC-weighted mean. Version 1 files (no
"layers") are still read.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
from typing import Dict, List, Optional, Sequence

import torch

from ..accumulator import check_width
from ..files import atomic_write
from ..hardware import ACC_BITS, ArrayConfig
from .probabilities import TimingOptions, check_voltages, error_probabilities

FORMAT = "pyvs-error-table"
VERSION = 2
READS = (1, 2)


@dataclasses.dataclass
class ErrorTable:
    """voltages: volts [V], strictly increasing; p: [V][acc_bits] probabilities;
    freq_ghz: GHz; acc_bits: bits; params: what produced the table."""

    voltages: List[float]
    p: List[List[float]]
    freq_ghz: float
    acc_bits: int
    params: dict = dataclasses.field(default_factory=dict)
    layers: Dict[str, List[List[float]]] = dataclasses.field(default_factory=dict)

    def __post_init__(self):
        if not _number(self.freq_ghz) or self.freq_ghz <= 0:
            raise ValueError(f"error table: freq_ghz must be a positive number, got {self.freq_ghz!r}")
        validate(self.voltages, self.p, self.acc_bits)
        if not isinstance(self.layers, dict):
            raise ValueError("error table: layers must be an object of per-layer tables")
        for name, rows in self.layers.items():
            try:
                validate(self.voltages, rows, self.acc_bits)
            except ValueError as e:
                raise ValueError(f"error table: layer {name!r}: {e}") from None

    def tensor(self) -> torch.Tensor:
        """float64 [len(voltages), acc_bits]."""
        return torch.tensor(self.p, dtype=torch.float64)

    def p_bits(self, volts: float, layer: Optional[str] = None) -> torch.Tensor:
        """The row for one voltage of the grid (of one layer's table, if
        given), float64 [acc_bits] (exact match within 1e-9 V; the table is
        not interpolated)."""
        if layer is not None and layer not in self.layers:
            raise ValueError(f"the error table has no layer {layer!r}")
        rows = self.p if layer is None else self.layers[layer]
        for v, row in zip(self.voltages, rows):
            if abs(v - volts) <= 1e-9:
                return torch.tensor(row, dtype=torch.float64)
        raise ValueError(f"{volts} V is not on the table's grid {self.voltages}")

    def rates(self, volts: float):
        """What the op takes at one voltage: the per-bit row (float64
        [acc_bits]) of a table without layers, else {layer name: row}."""
        if not self.layers:
            return self.p_bits(volts)
        return {name: self.p_bits(volts, name) for name in self.layers}

    def schedule_rates(self, schedule) -> dict:
        """What the layers take when each runs at its own supply:
        ``schedule`` {layer name: V on the grid} -> {layer name: float64
        [acc_bits]} (the layer's own row where the table has layers, else
        the table's row at that voltage)."""
        return {name: self.p_bits(v, name if self.layers else None) for name, v in schedule.items()}


def _number(x) -> bool:
    """A finite int or float (JSON's true and false are not numbers here)."""
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def validate(voltages: Sequence[float], p: Sequence[Sequence[float]], acc_bits: int):
    """Checks a grid of voltages (V) and its rows of per-bit probabilities."""
    check_width(acc_bits, "error table: acc_bits")
    if not isinstance(voltages, (list, tuple)) or not voltages:
        raise ValueError("error table: voltages must be a non-empty list")
    for v in voltages:
        if not _number(v) or v <= 0:
            raise ValueError(f"error table: voltage {v!r} is not a positive number")
    if any(b <= a for a, b in zip(voltages, voltages[1:])):
        raise ValueError(f"error table: voltages must be strictly increasing, got {list(voltages)}")
    if not isinstance(p, (list, tuple)) or len(p) != len(voltages):
        raise ValueError(f"error table: p must have one row per voltage ({len(voltages)}), "
                         f"got {len(p) if isinstance(p, (list, tuple)) else type(p).__name__}")
    for i, row in enumerate(p):
        if not isinstance(row, (list, tuple)) or len(row) != acc_bits:
            raise ValueError(f"error table: row {i} ({voltages[i]} V) must have acc_bits = {acc_bits} "
                             f"entries, got {len(row) if isinstance(row, (list, tuple)) else row!r}")
        for b, x in enumerate(row):
            if not _number(x) or not 0.0 <= x <= 1.0:
                raise ValueError(f"error table: p[{i}][{b}] = {x!r} is not a probability in [0, 1]")


def make_table(voltages, array: ArrayConfig = ArrayConfig(), acc_bits: int = ACC_BITS, **model_options) -> ErrorTable:
    """Runs :func:`pyvs.timing.error_probabilities` on a grid of voltages
    (V, strictly increasing) for ``array``'s clock and nominal supply."""
    p = error_probabilities(voltages, array, acc_bits, **model_options)
    options = TimingOptions.from_kwargs(model_options)
    params = dict(options.describe(), v_nominal=array.v_nominal)
    return ErrorTable(check_voltages(voltages, options.tech, array), p.tolist(), float(array.freq_ghz),
                      int(acc_bits), params)


def save_table(table: ErrorTable, path: str) -> None:
    doc = {"format": FORMAT, "version": VERSION, "freq_ghz": table.freq_ghz,
           "acc_bits": table.acc_bits, "voltages": table.voltages, "p": table.p,
           "layers": table.layers, "params": table.params}
    atomic_write(path, json.dumps(doc, indent=1))


def load_table(path: str) -> ErrorTable:
    """Reads and validates an error-table file (``path``: a file name); a
    malformed one is a ValueError."""
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"load_table: path must be a file name, got {type(path).__name__}")
    try:
        with open(path, encoding="utf-8") as f:
            doc = json.load(f)
    except FileNotFoundError:
        raise ValueError(f"error table {path!r} does not exist") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"error table {path!r} is not valid JSON: {e}") from None
    except OSError as e:
        raise ValueError(f"error table {path!r} cannot be read: {e.strerror or e}") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise ValueError(f"{path!r} is not a pyvs error table (no \"format\": \"{FORMAT}\")")
    version = doc.get("version")
    if isinstance(version, bool) or version not in READS:
        raise ValueError(f"{path!r}: unsupported error-table version {doc.get('version')!r} "
                         f"(this pyvs reads versions {list(READS)})")
    missing = [k for k in ("freq_ghz", "acc_bits", "voltages", "p") if k not in doc]
    if missing:
        raise ValueError(f"{path!r}: error table lacks {missing}")
    return ErrorTable(doc["voltages"], doc["p"], doc["freq_ghz"], doc["acc_bits"],
                      doc.get("params", {}), doc.get("layers", {}))
