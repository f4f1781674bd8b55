"""The joint search: per-layer supply voltages, the protected bits and what a
detected error does (replay or TE-Drop) that minimise energy within an
accuracy and a latency budget; searched on one part of the images and
reported on the other, so that nothing reported was tuned on.

For each latency budget and each ``on_error`` ('replay', 'drop'):

1. **Best global setting.** At every grid voltage, every layer at it, the
   fewest top bits that meet the accuracy budget (the 'auto' search of
   :mod:`pyvs.strategies`, each step an evaluation on the search images);
   the best global setting is the one of least energy that meets both
   budgets.
2. **Per-layer schedule.** The layers are grouped (by kind by default:
   :func:`pyvs.nn.layers.layer_kinds`; or one group per layer). From two
   starts, every group at the grid's top voltage and every group at the
   best global voltage, a greedy descent: each step lowers one group by one
   grid step, the move that saves the most energy per unit of risk added
   (predicted latency for replays, expected drops per image for TE-Drop),
   among the moves predicted within the latency budget; an evaluation on
   the search images keeps the move if it meets both budgets, else that
   group stays where it is for the rest of the descent. Predictions need
   no evaluation: a layer's expected detected errors per image are the
   protected bits' rates at its voltage times its MACs. A move keeps the
   mask of the point it leaves and protects, in addition, every bit whose
   expected errors per image cross half the accuracy budget (were each such
   error to change a prediction, the loss would still be within it); bits
   that already erred unprotected stay so, since the evaluation found them
   harmless, until an evaluation says otherwise. The better descent's
   schedule then has its mask trimmed by the 'auto' search.
3. **Report.** Each chosen configuration is evaluated once on the report
   images, with its 95 % intervals.

Cost, in evaluations of the search images: 'auto' takes about
log2(#erring bits) + 1 per grid voltage with errors; a descent at most
(#groups x #grid steps) + #groups; evaluations repeat nowhere (points are
cached by what decides them). The folder keeps every evaluation, so an
interrupted search resumes where it stopped.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
from typing import Dict, List, Optional, Sequence, Tuple

from tqdm import tqdm

import torch

from .experiment import Experiment
from .files import atomic_write
from .results import PointResult, load_golden, read_tagged, save_golden, write_tagged
from .schedule import Schedule
from .strategies import Budget, auto_select, bit_ranking
from .sweep import as_recorded, fingerprint_batches, fingerprint_model

GROUPINGS = ("kind", "layer")
FAMILIES = ("global", "global-drop", "schedule", "schedule-drop")  # what the result rows are called
EVALUATIONS, CHOSEN, META = "evaluations.json", "chosen.json", "meta.json"


@dataclasses.dataclass(frozen=True)
class SearchConfig:
    """What the search explores: ``voltages`` (V, the grid every layer may
    take), ``latency_budgets`` (fractions), ``accuracy`` (the accuracy
    budget, a fraction: 0.003 is 0.3 points), ``groups`` ('kind' or
    'layer') and ``seed``."""

    voltages: Tuple[float, ...]
    latency_budgets: Tuple[float, ...] = (1e-5, 1e-2)
    accuracy: float = 0.003
    groups: str = "kind"
    seed: int = 0

    def __post_init__(self):
        if not self.voltages or len(set(self.voltages)) != len(self.voltages):
            raise ValueError("the search needs distinct grid voltages")
        if self.groups not in GROUPINGS:
            raise ValueError(f"groups must be one of {', '.join(GROUPINGS)}, got {self.groups!r}")
        for b in self.latency_budgets:
            Budget(self.accuracy, b)  # checks both

    def as_dict(self) -> dict:
        return {**dataclasses.asdict(self), "voltages": sorted(self.voltages, reverse=True)}


@dataclasses.dataclass
class Choice:
    """One chosen configuration: its family (:data:`FAMILIES`), the latency
    budget it was chosen under, the row on the search images and on the
    report images, and the search evaluations it took."""

    family: str
    latency_budget: float
    search: PointResult
    report: Optional[PointResult] = None
    evaluations: int = 0


class Search:
    """The search on ``search_exp``'s images and the report on
    ``report_exp``'s (the same model, array, energy and timing; the tables
    are the search experiment's), into ``out_dir`` (resumed if it holds
    this search)."""

    def __init__(self, search_exp: Experiment, report_exp: Experiment, config: SearchConfig, out_dir: str,
                 progress: bool = True):
        self.exp, self.report_exp, self.config, self.out_dir = search_exp, report_exp, config, out_dir
        self.progress = progress
        self.volts = sorted(config.voltages, reverse=True)
        kinds = search_exp.kinds
        self.groups = ({k: [n for n, kk in kinds.items() if kk == k] for k in dict.fromkeys(kinds.values())}
                       if config.groups == "kind" else {n: [n] for n in kinds})
        self.rows: List[Tuple[str, PointResult]] = []  # (split, row) of every evaluation, in order
        self._bar = None
        self._globals_done: set = set()  # on_error values whose global searches ran (any latency budget)

    # ---- predictions (no evaluation) ---------------------------------------

    def expected(self, schedule: Schedule) -> Dict[str, List[float]]:
        """Expected errors per image of each layer and bit at ``schedule``."""
        rates = self.exp.schedule_rates(schedule)
        macs = self.exp.workload.macs_by_layer
        return {n: (rates[n] * macs[n]).tolist() for n in schedule}

    def grown_mask(self, mask: int, now: Schedule, trial: Schedule) -> int:
        """The mask of a move from ``now`` (protecting ``mask``) to ``trial``:
        ``mask`` plus every bit whose expected errors per image cross half
        the accuracy budget on the way (bits already above it stay as the
        evaluation at ``now`` found them acceptable)."""
        limit = self.config.accuracy / 2
        before, after = self._per_bit(now).tolist(), self._per_bit(trial).tolist()
        return mask | sum(1 << b for b, (e0, e1) in enumerate(zip(before, after)) if e1 > limit >= e0)

    def predict(self, schedule: Schedule, mask: int, on_error: str):
        """(costs, expected detected errors per image) of a schedule and mask."""
        detected = {n: sum(e for b, e in enumerate(per) if (mask >> b) & 1)
                    for n, per in self.expected(schedule).items()}
        costs = self.exp.workload.costs(schedule, bin(mask).count("1"),
                                        detected if on_error == "replay" else {})
        return costs, sum(detected.values())

    # ---- evaluations ---------------------------------------------------------

    def evaluate(self, schedule: Schedule, mask: int, on_error: str, strategy: str) -> PointResult:
        before = self.exp.evaluations
        row = self.exp.schedule_point(schedule, mask, self.config.seed, strategy, on_error)
        if self.exp.evaluations > before:
            self._record("search", row)
        return row

    def _record(self, split: str, row: PointResult) -> None:
        self.rows.append((split, row))
        write_tagged(os.path.join(self.out_dir, EVALUATIONS), [({"split": s}, r) for s, r in self.rows])
        if self._bar is not None:
            self._bar.update(self.exp.n_images if split == "search" else self.report_exp.n_images)

    def meets(self, row: PointResult, budget: Budget) -> bool:
        return row.accuracy.meets(budget.accuracy) and row.costs.latency_overhead <= budget.latency + 1e-15

    # ---- 1. the best global setting --------------------------------------------

    def best_global(self, budget: Budget, on_error: str) -> Tuple[Optional[PointResult], int]:
        """The least-energy global point within ``budget`` (None if none), and the evaluations it took."""
        before, best = self.exp.evaluations, None
        strategy = "global" + ("-drop" if on_error == "drop" else "")
        for v in self.volts:
            schedule = dict.fromkeys(self.exp.kinds, v)
            mask, _ = auto_select(lambda m: self.evaluate(schedule, m, on_error, strategy + "-search"),
                                  self._per_bit(schedule), budget.accuracy)
            row = self.evaluate(schedule, mask, on_error, strategy)
            if self.meets(row, budget) and (best is None or row.costs.energy_j < best.costs.energy_j):
                best = row
        return best, self.exp.evaluations - before

    def _per_bit(self, schedule: Schedule) -> torch.Tensor:
        """Expected errors per image of each bit at ``schedule``, float64 [W]."""
        return torch.tensor([sum(col) for col in zip(*self.expected(schedule).values())], dtype=torch.float64)

    # ---- 2. the per-layer schedule ----------------------------------------------

    def descend(self, start: PointResult, budget: Budget, on_error: str, strategy: str) -> PointResult:
        """The greedy descent from the evaluated point ``start`` (within
        ``budget``; see the module's docstring); the last point it kept."""
        row, frozen = start, set()
        while True:
            move = self._best_move(row.schedule, row.mask, budget, on_error, frozen)
            if move is None:
                return row
            group, trial, mask = move
            got = self.evaluate(trial, mask, on_error, strategy + "-search")
            if self.meets(got, budget):
                row = got
            else:
                frozen.add(group)

    def _best_move(self, schedule: Schedule, mask: int, budget: Budget, on_error: str, frozen: set):
        now, risk_now = self.predict(schedule, mask, on_error)
        best, best_ratio = None, 0.0
        for group, layers in self.groups.items():
            below = [v for v in self.volts if v < schedule[layers[0]]]
            if group in frozen or not below:
                continue
            trial = {n: (below[0] if n in layers else v) for n, v in schedule.items()}
            trial_mask = self.grown_mask(mask, schedule, trial)
            costs, risk = self.predict(trial, trial_mask, on_error)
            gain = now.energy_j - costs.energy_j
            if gain <= 0 or costs.latency_overhead > budget.latency:
                continue
            risk_added = (costs.latency_overhead - now.latency_overhead) if on_error == "replay" else risk - risk_now
            ratio = gain / max(risk_added, 1e-12)
            if ratio > best_ratio:
                best, best_ratio = (group, trial, trial_mask), ratio
        return best

    def best_schedule(self, budget: Budget, on_error: str, glob: Optional[PointResult]) -> Optional[PointResult]:
        """The best descent's point (from the top of the grid with nothing
        protected, and from the best global point), its mask trimmed."""
        strategy = "schedule" + ("-drop" if on_error == "drop" else "")
        top = self.evaluate(dict.fromkeys(self.exp.kinds, self.volts[0]), 0, on_error, strategy + "-search")
        starts = [r for r in (top, glob) if r is not None and self.meets(r, budget)]
        found = [self.descend(s, budget, on_error, strategy) for s in starts]
        if not found:
            return None
        best = min(found, key=lambda r: r.costs.energy_j)
        # The fewest bits that meet the accuracy budget at this schedule.
        mask, _ = auto_select(lambda m: self.evaluate(best.schedule, m, on_error, strategy + "-search"),
                              self._per_bit(best.schedule), budget.accuracy)
        trimmed = self.evaluate(best.schedule, mask, on_error, strategy)
        keep = trimmed if self.meets(trimmed, budget) and trimmed.costs.energy_j <= best.costs.energy_j else best
        return dataclasses.replace(keep, strategy=strategy)

    # ---- the whole search ----------------------------------------------------------

    def _ahead(self, phases: list) -> int:
        """At most how many images the phases left evaluate: per phase the
        global 'auto' searches (once per on_error: the latency budget does not
        change them), two full descents and a trim; then the reports."""
        per_v = [bin(int(sum(1 << b for b, e in enumerate(self._per_bit(dict.fromkeys(self.exp.kinds, v)).tolist())
                                if e > 0))).count("1") for v in self.volts]
        glob = sum(math.ceil(math.log2(k + 1)) + 2 for k in per_v if k)
        descent = 2 * (1 + len(self.groups) * (len(self.volts) - 1)) + 3
        first = {on_error for _, on_error in phases} - self._globals_done
        return (len(phases) * descent + len(first) * glob) * self.exp.n_images + 2 * len(phases) * \
            self.report_exp.n_images

    def run(self) -> List[Choice]:
        """The search and the report; writes the folder, returns the choices."""
        os.makedirs(self.out_dir, exist_ok=True)
        self._resume()
        phases = [(latency, on_error) for latency in self.config.latency_budgets for on_error in ("replay", "drop")]
        choices = []
        with tqdm(total=self._ahead(phases), desc="schedule search (at most)", unit="img",
                  disable=not self.progress) as bar:
            self._bar = bar
            try:
                for i, (latency, on_error) in enumerate(phases):
                    choices += self._phase(Budget(self.config.accuracy, latency), on_error)
                    bar.total = bar.n + self._ahead(phases[i + 1:]) + 2 * (i + 1) * self.report_exp.n_images
                    bar.refresh()
                for c in choices:
                    c.report = self._report(c)
            finally:
                self._bar = None
        self._write_chosen(choices)
        return choices

    def _phase(self, budget: Budget, on_error: str) -> List[Choice]:
        """The best global point and the best schedule within ``budget``; a
        choice's evaluations are those its search ran (the global search's
        are shared by every latency budget and counted where they ran)."""
        before = self.exp.evaluations
        glob, _ = self.best_global(budget, on_error)
        self._globals_done.add(on_error)
        middle = self.exp.evaluations
        sched = self.best_schedule(budget, on_error, glob)
        suffix = "-drop" if on_error == "drop" else ""
        return [Choice(family, budget.latency, row, evaluations=n)
                for family, row, n in (("global" + suffix, glob, middle - before),
                                       ("schedule" + suffix, sched, self.exp.evaluations - middle))
                if row is not None]

    def _report(self, c: Choice) -> PointResult:
        before = self.report_exp.evaluations
        row = self.report_exp.schedule_point(c.search.schedule, c.search.mask, self.config.seed, c.family,
                                             c.search.on_error)
        if self.report_exp.evaluations > before:
            self._record("report", row)
        return row

    def _resume(self) -> None:
        """Loads a finished part of this search from the folder (refusing another search's)."""
        meta = {"config": self.config.as_dict(), "search_images": self.exp.n_images,
                "report_images": self.report_exp.n_images, "kinds": self.exp.kinds,
                "data_sha256": [fingerprint_batches(e.batches, e.world) for e in (self.exp, self.report_exp)],
                "model_sha256": fingerprint_model(self.exp.model), "array": self.exp.array.as_dict(),
                "energy": dataclasses.asdict(self.exp.energy), "timing": self.exp.timing.describe()}
        path = os.path.join(self.out_dir, META)
        if os.path.exists(path):
            with open(path) as f:
                old = json.load(f)
            if old != as_recorded(old, json.loads(json.dumps(meta))):
                raise ValueError(f"{self.out_dir!r} holds another search (other images, grid, budgets or models); "
                                 "use a new output folder")
        atomic_write(path, json.dumps(meta, indent=1))
        for split, exp in (("search", self.exp), ("report", self.report_exp)):
            folder = os.path.join(self.out_dir, split)
            os.makedirs(folder, exist_ok=True)
            golden = load_golden(folder)
            if golden is not None and golden.accuracy.n == exp.n_images:
                exp._golden = golden
            else:
                save_golden(folder, exp.golden)
        path = os.path.join(self.out_dir, EVALUATIONS)
        if not os.path.exists(path):
            return
        for tags, row in read_tagged(path):
            (self.exp if tags["split"] == "search" else self.report_exp).remember(row)
            self.rows.append((tags["split"], row))

    def _write_chosen(self, choices: List[Choice]) -> None:
        tagged = []
        for i, c in enumerate(choices):
            tags = {"choice": i, "family": c.family, "latency_budget": c.latency_budget,
                    "search_evaluations": c.evaluations}
            tagged += [({**tags, "split": "search"}, c.search)] + ([({**tags, "split": "report"}, c.report)]
                                                                  if c.report else [])
        write_tagged(os.path.join(self.out_dir, CHOSEN), tagged)


def load_chosen(out_dir: str) -> List[Choice]:
    """The chosen configurations of a finished search folder."""
    path = os.path.join(out_dir, CHOSEN)
    if not os.path.exists(path):
        raise ValueError(f"{out_dir!r} holds no finished schedule search ({CHOSEN})")
    choices: Dict[int, Choice] = {}
    for tags, row in read_tagged(path):
        c = choices.setdefault(tags["choice"], Choice(tags["family"], tags["latency_budget"], row,
                                                      evaluations=tags["search_evaluations"]))
        if tags["split"] == "report":
            c.report = row
    return list(choices.values())


def search_rows(out_dir: str) -> List[Tuple[str, PointResult]]:
    """Every evaluation of a search folder: (split, row)."""
    return [(tags["split"], row) for tags, row in read_tagged(os.path.join(out_dir, EVALUATIONS))]


def split_batches(batches: Sequence, n: int) -> Tuple[list, list]:
    """``batches`` (a list of (images, labels)) as the first ``n`` images and the rest, in order."""
    first, rest, seen = [], [], 0
    for x, y in batches:
        k = max(0, min(len(y), n - seen))
        if k:
            first.append((x[:k], y[:k]))
        if k < len(y):
            rest.append((x[k:], y[k:]))
        seen += len(y)
    return first, rest


__all__ = ["SearchConfig", "Search", "Choice", "load_chosen", "search_rows", "split_batches", "GROUPINGS",
           "FAMILIES"]
