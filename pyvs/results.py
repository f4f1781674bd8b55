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
import warnings
from typing import Dict, List, Optional, Tuple

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
    corrected_per_layer: Dict[str, float]  # layer name -> corrected errors per image
    latency_overhead: float     # stall cycles / base cycles (errors of one cycle share its stall)
    latency_overhead_bound: float  # one stall per corrected error: the upper bound
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
        """A row from its dict (JSON), every field checked for its type."""
        if not isinstance(d, dict):
            raise ValueError(f"a result row must be an object, got {type(d).__name__}")
        missing = [k for k in FIELDS if k not in d]
        if missing:
            raise ValueError(f"a result row lacks the fields {missing}")
        for name, kind in _KINDS.items():
            if not _is(d[name], kind):
                raise ValueError(f"field {name!r} of a result row must be {kind}, got {d[name]!r}")
        try:
            int(d["protect"], 16)
        except ValueError:
            raise ValueError(f"field 'protect' of a result row must be a hex mask, got {d['protect']!r}") from None
        return cls(**{k: d[k] for k in FIELDS})

    @classmethod
    def from_csv(cls, d: dict) -> "PointResult":
        """A row from its results.csv cells (text)."""
        parse = {"int": int, "float": float, "str": str, "list": json.loads, "dict": json.loads}
        try:
            return cls.from_dict({k: parse[_KINDS[k]](d[k]) for k in FIELDS})
        except (KeyError, TypeError, ValueError) as e:
            raise ValueError(f"a results.csv row is malformed ({e})") from None


FIELDS = [f.name for f in dataclasses.fields(PointResult)]
_KINDS = {f.name: {"float": "float", "int": "int", "str": "str", "List[int]": "list"}.get(f.type, "dict")
          for f in dataclasses.fields(PointResult)}


def _is(value, kind: str) -> bool:
    if kind == "list":
        return isinstance(value, list) and all(isinstance(x, int) and not isinstance(x, bool) for x in value)
    if kind == "dict":
        return isinstance(value, dict) and all(isinstance(k, str) and _is(x, "float") for k, x in value.items())
    if kind == "str":
        return isinstance(value, str)
    ok = (int, float) if kind == "float" else (int,)
    return isinstance(value, ok) and not isinstance(value, bool)


def _csv(rows: List[PointResult]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=FIELDS)
    writer.writeheader()
    for r in rows:
        writer.writerow({k: (json.dumps(v) if isinstance(v, (list, dict)) else v)
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


def _rows_from_json(path: str) -> List[PointResult]:
    with open(path) as f:
        doc = json.load(f)
    if not isinstance(doc, list):
        raise ValueError("it is not a list of rows")
    return [PointResult.from_dict(d) for d in doc]


def _rows_from_csv(path: str) -> List[PointResult]:
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        if reader.fieldnames != FIELDS:
            raise ValueError("its columns are not those of a result row")
        return [PointResult.from_csv(d) for d in reader]


def _unique(rows: List[PointResult], what: str) -> List[PointResult]:
    """The rows with the first of each (voltage, strategy, seed) key."""
    seen, out = set(), []
    for r in rows:
        if r.key in seen:
            warnings.warn(f"{what}: a repeated row for {r.key} is dropped", stacklevel=3)
            continue
        seen.add(r.key)
        out.append(r)
    return out


def _authoritative_rows(out_dir: str) -> List[PointResult]:
    """The rows of results.json (the authoritative copy), or, where it is
    missing or damaged, of results.csv if that one is whole."""
    path, csv_path = os.path.join(out_dir, RESULTS), os.path.join(out_dir, CSV)
    if not os.path.exists(path):
        return _rows_from_csv(csv_path) if os.path.exists(csv_path) else []
    try:
        return _rows_from_json(path)
    except (OSError, ValueError) as e:
        problem = str(e).splitlines()[0]
    try:
        rows = _rows_from_csv(csv_path)
    except (OSError, ValueError):
        raise ValueError(f"{path!r} is damaged ({problem}) and {CSV} cannot replace it; move the "
                         "folder away to start again") from None
    warnings.warn(f"{path!r} is damaged ({problem}); its {len(rows)} rows are taken from {CSV}",
                  stacklevel=3)
    return rows


def load_results(out_dir: str) -> Tuple[List[PointResult], List[PointResult], dict]:
    """(rows, search steps, meta) of a results folder, each file checked. A
    damaged results.json is replaced by a whole results.csv (and the other
    way round by :func:`write_results`); repeated rows are dropped."""
    if not os.path.isdir(out_dir):
        raise ValueError(f"results folder {out_dir!r} does not exist")
    rows = _unique(_authoritative_rows(out_dir), os.path.join(out_dir, RESULTS))
    search_path, meta_path = os.path.join(out_dir, SEARCH), os.path.join(out_dir, META)
    try:
        search = _rows_from_json(search_path) if os.path.exists(search_path) else []
    except (OSError, ValueError) as e:
        warnings.warn(f"{search_path!r} is damaged ({str(e).splitlines()[0]}); the auto points' "
                      "search steps are left out", stacklevel=2)
        search = []
    meta = {}
    if os.path.exists(meta_path):
        try:
            with open(meta_path) as f:
                meta = json.load(f)
        except (OSError, ValueError) as e:
            raise ValueError(f"{meta_path!r} is damaged ({str(e).splitlines()[0]})") from None
    if not isinstance(meta, dict):
        raise ValueError(f"{meta_path!r} is damaged (not an object)")
    return rows, search, meta


def save_golden(out_dir: str, golden: dict) -> None:
    """golden: {'pred': int64 [N, 5], 'clean': accuracy dict, 'shapes': GEMM shapes}."""
    atomic_write(os.path.join(out_dir, GOLDEN), lambda f: torch.save(golden, f))


def load_golden(out_dir: str) -> Optional[dict]:
    path = os.path.join(out_dir, GOLDEN)
    return torch.load(path) if os.path.exists(path) else None
