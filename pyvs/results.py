"""The result of one experiment point, and the files a sweep keeps.

:class:`PointResult` is the one definition of a result row: its fields,
their order (the columns of results.csv) and their units. Everything that
writes or reads rows (the experiment, the sweep, the report,
scripts/paper_table.py) goes through it.

A results folder holds results.json (the rows, the authoritative copy),
results.csv (the same rows for spreadsheets), search.json (every evaluation
of the automatic search), meta.json (what the sweep was made from) and
golden.pt (the fault-free predictions). Every file is replaced atomically.
"""
from __future__ import annotations

import csv
import dataclasses
import io
import json
import os
from typing import List, Optional, Tuple

import torch

from .files import atomic_write

RESULTS, CSV, SEARCH, META, GOLDEN = "results.json", "results.csv", "search.json", "meta.json", "golden.pt"


@dataclasses.dataclass
class PointResult:
    """One (voltage, strategy, seed) point. Accuracies are fractions with
    95 % Wilson intervals (``*_lo``, ``*_hi``); counts are per data set
    unless ``_per_image``; energies in joules per image."""

    voltage: float              # supply voltage, V
    strategy: str               # none, all, msbN, 0xMASK, auto (auto-search: a search step)
    seed: int
    protect: str                # protect mask, hex (e.g. 0xe0000000)
    protected_bits: int
    n: int                      # images
    top1: float
    top1_lo: float
    top1_hi: float
    top5: float
    top5_lo: float
    top5_hi: float
    agree: float                # top-1 agreement with the golden run
    agree_lo: float
    agree_hi: float
    top1_loss: float            # clean top-1 - top1
    agree_loss: float           # 1 - agree
    injected: int               # timing errors that flipped a bit
    corrected: int              # timing errors Razor corrected (replays)
    injected_per_image: float
    corrected_per_image: float
    latency_overhead: float     # replay cycles / base cycles
    energy_j: float
    energy_saving: float        # 1 - energy / energy at the nominal voltage without protection
    energy_dynamic_j: float
    energy_leakage_j: float
    energy_razor_j: float
    energy_replay_j: float
    max_p: float                # largest per-bit error probability per MAC
    injected_per_bit: List[int]
    corrected_per_bit: List[int]
    evaluations: int            # evaluations behind the point (auto: its search steps)
    seconds: float              # wall time of those evaluations

    @property
    def key(self) -> Tuple[float, str, int]:
        return (self.voltage, self.strategy, self.seed)

    @property
    def mask(self) -> int:
        return int(self.protect, 16)

    @classmethod
    def from_dict(cls, d: dict) -> "PointResult":
        names = [f.name for f in dataclasses.fields(cls)]
        missing = [k for k in names if k not in d]
        if missing:
            raise ValueError(f"a result row lacks the fields {missing}")
        return cls(**{k: d[k] for k in names})


FIELDS = [f.name for f in dataclasses.fields(PointResult)]


def _csv(rows: List[PointResult]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=FIELDS)
    writer.writeheader()
    for r in rows:
        writer.writerow({k: (json.dumps(v) if isinstance(v, list) else v)
                         for k, v in dataclasses.asdict(r).items()})
    return buf.getvalue()


def write_results(out_dir: str, rows: List[PointResult], search: List[PointResult]) -> None:
    """results.json, search.json and results.csv, each replaced atomically."""
    atomic_write(os.path.join(out_dir, RESULTS), json.dumps([dataclasses.asdict(r) for r in rows], indent=1))
    atomic_write(os.path.join(out_dir, SEARCH), json.dumps([dataclasses.asdict(r) for r in search], indent=1))
    if rows:
        atomic_write(os.path.join(out_dir, CSV), _csv(rows))


def write_meta(out_dir: str, meta: dict) -> None:
    atomic_write(os.path.join(out_dir, META), json.dumps(meta, indent=1))


def _read_json(path: str, default):
    if not os.path.exists(path):
        return default
    with open(path) as f:
        return json.load(f)


def load_results(out_dir: str) -> Tuple[List[PointResult], List[PointResult], dict]:
    """(rows, search steps, meta) of a results folder."""
    if not os.path.isdir(out_dir):
        raise ValueError(f"results folder {out_dir!r} does not exist")
    rows = [PointResult.from_dict(d) for d in _read_json(os.path.join(out_dir, RESULTS), [])]
    search = [PointResult.from_dict(d) for d in _read_json(os.path.join(out_dir, SEARCH), [])]
    return rows, search, _read_json(os.path.join(out_dir, META), {})


def save_golden(out_dir: str, golden: dict) -> None:
    """golden: {'pred': int64 [N, 5], 'clean': accuracy dict, 'shapes': GEMM shapes}."""
    atomic_write(os.path.join(out_dir, GOLDEN), lambda f: torch.save(golden, f))


def load_golden(out_dir: str) -> Optional[dict]:
    path = os.path.join(out_dir, GOLDEN)
    return torch.load(path) if os.path.exists(path) else None
