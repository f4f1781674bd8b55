"""Per-layer error tables of the event-driven model: each layer's captured
operand pairs (:mod:`pyvs.dataflow` captures them from a model) simulated
once into histograms, from which the tables at any voltage, clock or
guard-band follow at no further cost."""
from __future__ import annotations

from typing import Dict, Optional, Sequence

import numpy as np
from tqdm import tqdm

from ..hardware import ArrayConfig
from .event import EventModel
from .operands import Pairs
from .table import ErrorTable
from .waveforms import Histograms


class LayerTiming:
    """The event-driven model's histograms of every layer, from its
    captured pairs. ``provenance``: how the pairs were captured (recorded
    in the tables)."""

    def __init__(self, model: EventModel, histograms: Dict[str, Histograms], provenance: Optional[dict] = None):
        self.model, self.histograms, self.provenance = model, histograms, dict(provenance or {})

    @classmethod
    def from_pairs(cls, model: EventModel, pairs: Dict[str, Pairs], provenance: Optional[dict] = None,
                   progress: bool = False) -> "LayerTiming":
        """Simulates every layer's pairs (``progress``: a bar over the pairs)."""
        if not pairs:
            raise ValueError("no operand pairs: capture them from a model first")
        provenance = dict(provenance or {}, pairs={n: len(p) for n, p in pairs.items()})
        with tqdm(total=sum(len(p) for p in pairs.values()), desc="simulating operand pairs", unit="pair",
                  disable=not progress, leave=False) as bar:
            histograms = model.histograms_of(pairs, done=bar.update)
        return cls(model, {n: histograms[n] for n in pairs if n in histograms}, provenance)

    def tables(self, voltages: Sequence[float], array: ArrayConfig, guard_band: Optional[float] = None,
               late: bool = False) -> Dict[str, np.ndarray]:
        """Per layer: P(wrong) (or P(late)), float64 [len(voltages), W]."""
        out = {}
        for name, h in self.histograms.items():
            wrong, lateness = self.model.probabilities(h, voltages, array, guard_band)
            out[name] = lateness if late else wrong
        return out

    def table(self, voltages: Sequence[float], array: ArrayConfig, macs: Dict[str, int], params: dict,
              guard_band: Optional[float] = None) -> ErrorTable:
        """The :class:`ErrorTable` of the layers at ``voltages`` (V) on
        ``array``: per-layer P(wrong) rows, "p" their MAC-weighted mean
        (``macs``: layer -> MACs per image, in the model's order). A layer
        that got no pair (one image and one row per image) takes the mean.
        ``params``: the timing spec's description; guard_band: overrides the
        technology's (fraction)."""
        volts = sorted(voltages)
        tables = self.tables(volts, array, guard_band)
        mean = mac_weighted(tables, macs)
        missing = [n for n in macs if n not in tables]
        params = dict(params, operands=dict(self.provenance, layers_without_pairs=missing))
        layers = {n: (tables[n] if n in tables else mean).tolist() for n in macs}
        return ErrorTable(volts, mean.tolist(), float(array.freq_ghz), self.model.acc_bits, params, layers)


def mac_weighted(tables: Dict[str, np.ndarray], macs: Dict[str, int]) -> np.ndarray:
    """The MAC-weighted mean of per-layer tables [V, W]: the rate per MAC of
    one inference."""
    total = sum(macs.get(n, 0) for n in tables)
    if total <= 0:
        raise ValueError("mac_weighted: no MACs for the tables' layers")
    return sum(t * macs.get(n, 0) for n, t in tables.items()) / total
