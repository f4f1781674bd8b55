"""Per-layer error tables of the event-driven model: each layer's captured
operand pairs (:mod:`pyvs.dataflow` captures them from a model) simulated
once into histograms, from which the tables at any voltage, clock or
guard-band follow at no further cost."""
from __future__ import annotations

import math
from typing import Dict, Optional, Sequence, Tuple

import numpy as np
import torch
from tqdm import tqdm

from ..hardware import ArrayConfig
from .event import EventModel
from .operands import Pairs
from .signatures import Intervals, signature_table, wrong_intervals
from .table import ErrorTable
from .waveforms import Histograms


ONSET = 1e-9  # P(wrong) per MAC where errors are said to begin: about one per image of MobileNetV2
ONSET_STEP = 0.001  # V: the grid on which onsets are found


class LayerTiming:
    """The event-driven model's histograms of every layer, from its
    captured pairs. ``provenance``: how the pairs were captured (recorded
    in the tables); ``halves``: per layer, the histograms of its even- and
    odd-numbered pairs (whose sum is ``histograms``), for the split-half
    convergence check (:meth:`onsets`)."""

    def __init__(self, model: EventModel, histograms: Dict[str, Histograms], provenance: Optional[dict] = None,
                 halves: Optional[Dict[str, Tuple[Histograms, Histograms]]] = None,
                 pairs: Optional[Dict[str, Pairs]] = None):
        self.model, self.histograms, self.provenance = model, histograms, dict(provenance or {})
        self.halves = halves
        self.pairs = pairs  # kept for conditioned injection (joint_tables)
        self._onsets: Dict[tuple, dict] = {}
        self._intervals: Dict[str, Intervals] = {}
        self._intervals_from = math.inf

    @classmethod
    def from_pairs(cls, model: EventModel, pairs: Dict[str, Pairs], provenance: Optional[dict] = None,
                   progress: bool = False, keep_pairs: bool = False) -> "LayerTiming":
        """Simulates every layer's pairs (``progress``: a bar over the pairs),
        each half apart (the cost is the same: halves share batches);
        ``keep_pairs``: keeps them, for :meth:`joint_tables`."""
        if not pairs:
            raise ValueError("no operand pairs: capture them from a model first")
        provenance = dict(provenance or {}, pairs={n: len(p) for n, p in pairs.items()})
        groups = {(n, h): p.take(slice(h, None, 2)) for n, p in pairs.items() for h in (0, 1) if len(p) > h}
        with tqdm(total=sum(len(p) for p in pairs.values()), desc="simulating operand pairs", unit="pair",
                  disable=not progress, leave=False) as bar:
            found = model.histograms_of(groups, done=bar.update)
        halves = {n: (found[(n, 0)], found[(n, 1)]) for n in pairs if (n, 0) in found and (n, 1) in found}
        histograms = {n: (found[(n, 0)] + found[(n, 1)]) if n in halves else found[(n, 0)]
                      for n in pairs if (n, 0) in found}
        return cls(model, histograms, provenance, halves, pairs if keep_pairs else None)

    def joint_tables(self, voltage: float, array: ArrayConfig, guard_band: Optional[float] = None,
                     progress: bool = False) -> Dict[str, Tuple[torch.Tensor, torch.Tensor]]:
        """Conditioned injection's tables of every layer at ``voltage`` (V) on
        ``array``: {layer: (patterns int64 [P], joint float64 [W + 1, P])},
        P(pattern | signature) from its pairs' joint patterns
        (:mod:`pyvs.timing.signatures`). Not enveloped: each bit's marginal
        is the raw P(wrong) at this capture time, which the table's
        envelope equals wherever P(wrong) falls with the voltage (near the
        onset). The pairs' late intervals are simulated once, for the lowest
        voltage asked so far (``progress``: a bar over the pairs)."""
        if self.pairs is None:
            raise ValueError("conditioned injection needs the captured pairs: capture them with "
                             "injection='conditioned' (TimingSpec)")
        sigma, d2 = self.model.tech.sigma_gate, self.model.d2
        tc = float(self.model.capture_times([voltage], array, guard_band)[0])
        min_end = tc - 12 * sigma * math.sqrt(max(tc, 1e-12) * d2)
        if min_end < self._intervals_from:
            with tqdm(total=sum(len(p) for p in self.pairs.values()), desc="late intervals of the pairs",
                      unit="pair", disable=not progress, leave=False) as bar:
                self._intervals = {n: wrong_intervals(self.model, p, min_end, done=bar.update)
                                   for n, p in self.pairs.items()}
            self._intervals_from = min_end
        return {n: signature_table(p, self._intervals[n], tc, sigma, d2, self.model.acc_bits).op_tables()
                for n, p in self.pairs.items()}

    def onsets(self, array: ArrayConfig, macs: Dict[str, int], guard_band: Optional[float] = None) -> dict:
        """Where errors begin, and how far that rests on the pairs: the
        highest voltage (V, on a :data:`ONSET_STEP` grid below the nominal
        supply) at which some bit's MAC-weighted P(wrong) reaches
        :data:`ONSET`, from all pairs ("onset") and from each half of every
        layer's pairs ("halves"; None without halves). "converged": whether
        both halves' onsets lie within a step of the whole's, i.e. whether
        doubling the capture from half to all moved the onset by at most
        one step (it checks half the capture, so it errs on the side of
        asking for more pairs). None: no error above Vth. Remembered per
        (array, macs, guard_band): a sweep or slack map asks once per table."""
        key = (array, tuple(macs.items()), guard_band)
        if key not in self._onsets:
            self._onsets[key] = self._find_onsets(array, macs, guard_band)
        return dict(self._onsets[key])

    def _find_onsets(self, array: ArrayConfig, macs: Dict[str, int], guard_band: Optional[float]) -> dict:
        tech = self.model.tech
        lo = math.floor(max(tech.vth, tech.vth_die) / ONSET_STEP) + 1
        volts = [round(ONSET_STEP * i, 6) for i in range(lo, int(round(array.v_nominal / ONSET_STEP)) + 1)]

        def onset(hists: Dict[str, Histograms]) -> Optional[float]:
            tables = {n: self.model.probabilities(h, volts, array, guard_band)[0] for n, h in hists.items()}
            hit = np.nonzero(mac_weighted(tables, macs).max(1) >= ONSET)[0]
            return volts[hit[-1]] if len(hit) else None

        full, halves, converged = onset(self.histograms), None, None
        if self.halves:
            halves = [onset({n: hs[i] for n, hs in self.halves.items()}) for i in (0, 1)]
            converged = all(h == full if None in (h, full) else abs(h - full) <= ONSET_STEP + 1e-9
                            for h in halves)
        return {"threshold": ONSET, "step_v": ONSET_STEP, "onset": full, "halves": halves,
                "converged": converged, "pairs": int(sum(h.n for h in self.histograms.values()))}

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
        params = dict(params, operands=dict(self.provenance, layers_without_pairs=missing),
                      convergence=self.onsets(array, macs, guard_band))
        layers = {n: (tables[n] if n in tables else mean).tolist() for n in macs}
        return ErrorTable(volts, mean.tolist(), float(array.freq_ghz), self.model.acc_bits, params, layers)


def mac_weighted(tables: Dict[str, np.ndarray], macs: Dict[str, int]) -> np.ndarray:
    """The MAC-weighted mean of per-layer tables [V, W]: the rate per MAC of
    one inference."""
    total = sum(macs.get(n, 0) for n in tables)
    if total <= 0:
        raise ValueError("mac_weighted: no MACs for the tables' layers")
    return sum(t * macs.get(n, 0) for n, t in tables.items()) / total
