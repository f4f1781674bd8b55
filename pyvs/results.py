"""The result of one experiment point, and the files a sweep keeps.

:class:`PointResult` is the one definition of a result row: its fields,
their order (the columns of results.csv) and their units. Everything that
writes or reads rows (the experiment, the sweep, the report,
scripts/paper_table.py) goes through it.

Rows are typed in parts (:class:`pyvs.evaluate.Accuracy`,
:class:`pyvs.evaluate.Counts`, :class:`pyvs.costs.Costs`) and flat in the
files; this module is where they are flattened and read back.

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
from collections import defaultdict
from typing import Dict, List, Optional, Tuple

import torch

from .costs import Costs
from .evaluate import Accuracy, Counts, Golden
from .files import atomic_write

RESULTS, CSV, SEARCH, META, GOLDEN = "results.json", "results.csv", "search.json", "meta.json", "golden.pt"


@dataclasses.dataclass(frozen=True)
class PointResult:
    """One (voltage, strategy, seed) point: what was asked (voltage, V;
    strategy: none, all, msbN, 0xMASK, auto, each optionally -drop, or
    auto-search / auto-drop-search for a step of the search; seed; protect,
    the mask in hex; protected_bits; on_error, what a detected error did:
    'replay' or 'drop', TE-Drop; schedule, {layer: V} when the layers ran
    at their own supplies (:mod:`pyvs.schedule`; then voltage is their
    MAC-weighted mean), else empty; dataflow, the array's: 'ws' or 'os'), what the
    evaluation scored (:class:`pyvs.evaluate.Accuracy`) and counted
    (:class:`pyvs.evaluate.Counts`), what it costs
    (:class:`pyvs.costs.Costs`: latency fractions, energies in J per
    image), the largest per-bit error probability per MAC (max_p), and the
    evaluations (auto: its search steps) and wall time (s) behind it.
    Files hold it flat (:meth:`row`), one column per field of the parts."""

    voltage: float
    strategy: str
    seed: int
    protect: str
    protected_bits: int
    accuracy: Accuracy
    counts: Counts
    costs: Costs
    max_p: float
    evaluations: int
    seconds: float
    on_error: str = "replay"
    schedule: Dict[str, float] = dataclasses.field(default_factory=dict)
    dataflow: str = "ws"

    @property
    def key(self) -> Tuple[float, str, int]:
        return (self.voltage, self.strategy, self.seed)

    @property
    def mask(self) -> int:
        return int(self.protect, 16)

    def row(self) -> dict:
        """The flat record of the files, columns in :data:`FIELDS` order."""
        values = {k: v for part in (self.accuracy, self.counts, self.costs)
                  for k, v in dataclasses.asdict(part).items()}
        values.update({k: getattr(self, k) for k in _OWN})
        return {k: values[k] for k in FIELDS}

    @classmethod
    def from_dict(cls, d: dict) -> "PointResult":
        """A row from its flat record (JSON), every field checked for its type."""
        if not isinstance(d, dict):
            raise ValueError(f"a result row must be an object, got {type(d).__name__}")
        d = {**LATER, **d}
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
        parts = {name: part(**{f.name: d[f.name] for f in dataclasses.fields(part)})
                 for name, part in _PARTS.items()}
        return cls(**{k: d[k] for k in _OWN}, **parts)

    @classmethod
    def from_csv(cls, d: dict) -> "PointResult":
        """A row from its results.csv cells (text)."""
        parse = {"int": int, "float": float, "str": str, "list": json.loads, "dict": json.loads}
        try:
            return cls.from_dict({k: parse[_KINDS[k]](d[k]) for k in FIELDS if k in d or k not in LATER})
        except (KeyError, TypeError, ValueError) as e:
            raise ValueError(f"a results.csv row is malformed ({e})") from None


_PARTS = {"accuracy": Accuracy, "counts": Counts, "costs": Costs}
_OWN = [f.name for f in dataclasses.fields(PointResult) if f.name not in _PARTS]
# The columns of results.csv and the keys of results.json rows, in order.
FIELDS = ["voltage", "strategy", "seed", "protect", "protected_bits",
          "n", "top1", "top1_lo", "top1_hi", "top5", "top5_lo", "top5_hi", "agree", "agree_lo", "agree_hi",
          "top1_loss", "agree_loss", "injected", "corrected", "injected_per_image", "corrected_per_image",
          "corrected_per_layer", "latency_overhead", "latency_overhead_bound", "energy_j", "energy_saving",
          "energy_dynamic_j", "energy_leakage_j", "energy_razor_j", "energy_replay_j", "max_p",
          "injected_per_bit", "corrected_per_bit", "evaluations", "seconds", "injected_per_layer",
          "energy_movement_j", "on_error", "energy_switch_j", "switch_overhead", "switches", "schedule", "dataflow"]
# Columns added after the first results folders were made, and what rows
# read from such a folder get instead.
LATER = {"injected_per_layer": {}, "energy_movement_j": 0.0, "on_error": "replay", "energy_switch_j": 0.0,
         "switch_overhead": 0.0, "switches": 0.0, "schedule": {}, "dataflow": "ws"}
_TYPES = {f.name: f.type for cls in (PointResult, *_PARTS.values()) for f in dataclasses.fields(cls)
          if f.name not in _PARTS}
assert sorted(FIELDS) == sorted(_TYPES), "FIELDS must name every field of a result row once"
_KINDS = {name: {"float": "float", "int": "int", "str": "str", "List[int]": "list"}.get(_TYPES[name], "dict")
          for name in FIELDS}


def _is(value, kind: str) -> bool:
    if kind == "list":
        return isinstance(value, list) and all(isinstance(x, int) and not isinstance(x, bool) for x in value)
    if kind == "dict":
        return isinstance(value, dict) and all(isinstance(k, str) and _is(x, "float") for k, x in value.items())
    if kind == "str":
        return isinstance(value, str)
    ok = (int, float) if kind == "float" else (int,)
    return isinstance(value, ok) and not isinstance(value, bool)


def by_strategy(rows: List[PointResult]) -> Dict[str, List[dict]]:
    """Flat rows per strategy, numeric fields averaged over seeds (``seeds``:
    how many), sorted by voltage: the series the report's plots draw."""
    groups: Dict[tuple, List[dict]] = defaultdict(list)
    for r in rows:
        groups[(r.strategy, r.voltage)].append(r.row())
    out: Dict[str, List[dict]] = defaultdict(list)
    for (s, v), rs in sorted(groups.items(), key=lambda kv: (kv[0][0], kv[0][1])):
        avg = {k: sum(r[k] for r in rs) / len(rs) for k in rs[0] if isinstance(rs[0][k], (int, float))}
        avg.update(strategy=s, voltage=v, seeds=len(rs), protect=rs[0]["protect"])
        out[s].append(avg)
    return out


def clean_record(golden: Golden) -> dict:
    """The golden run's accuracy as files record it ("clean" in meta.json,
    golden.pt and ``pyvs run --json``): n, top1, top1_lo, top1_hi, top5,
    top5_lo, top5_hi (fractions), seconds, images_per_s."""
    a = golden.accuracy
    return {"n": a.n, "top1": a.top1, "top1_lo": a.top1_lo, "top1_hi": a.top1_hi, "top5": a.top5,
            "top5_lo": a.top5_lo, "top5_hi": a.top5_hi, "seconds": golden.seconds,
            "images_per_s": golden.images_per_s}


def run_record(golden: Golden, point: PointResult) -> dict:
    """What ``pyvs run --json`` writes: the clean accuracy and the point's row."""
    return {"clean": clean_record(golden), "point": point.row()}


def write_run(path: str, golden: Golden, point: PointResult) -> None:
    """``pyvs run --json``'s file (:func:`run_record`), replaced atomically."""
    atomic_write(path, json.dumps(run_record(golden, point), indent=1))


def _csv(rows: List[PointResult]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=FIELDS)
    writer.writeheader()
    for r in rows:
        writer.writerow({k: (json.dumps(v) if isinstance(v, (list, dict)) else v)
                         for k, v in r.row().items()})
    return buf.getvalue()


def write_results(out_dir: str, rows: List[PointResult], search: List[PointResult]) -> None:
    """results.json, search.json and results.csv, each replaced atomically."""
    atomic_write(os.path.join(out_dir, RESULTS), json.dumps([r.row() for r in rows], indent=1))
    atomic_write(os.path.join(out_dir, SEARCH), json.dumps([r.row() for r in search], indent=1))
    if rows:
        atomic_write(os.path.join(out_dir, CSV), _csv(rows))


def write_tagged(path: str, tagged: List[Tuple[dict, PointResult]]) -> None:
    """A JSON list of result rows, each with its tags (keys that are not
    fields of a row, e.g. which images it ran on) in front; replaced atomically."""
    clash = sorted({k for tags, _ in tagged for k in tags} & set(FIELDS))
    if clash:
        raise ValueError(f"tags {clash} would hide fields of the result rows")
    atomic_write(path, json.dumps([{**tags, **r.row()} for tags, r in tagged], indent=1))


def read_tagged(path: str) -> List[Tuple[dict, PointResult]]:
    """What :func:`write_tagged` wrote: (tags, row) pairs, in order."""
    with open(path) as f:
        doc = json.load(f)
    if not isinstance(doc, list):
        raise ValueError(f"{path!r} must hold a JSON list of result rows")
    out = []
    for d in doc:
        if not isinstance(d, dict):
            raise ValueError(f"{path!r}: every entry must be an object, got {type(d).__name__}")
        tags = {k: v for k, v in d.items() if k not in FIELDS}
        out.append((tags, PointResult.from_dict({k: v for k, v in d.items() if k in FIELDS})))
    return out


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
        if not reader.fieldnames or set(FIELDS) - set(LATER) - set(reader.fieldnames) or \
                set(reader.fieldnames) - set(FIELDS) or reader.fieldnames != [k for k in FIELDS if k in reader.fieldnames]:
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


def save_golden(out_dir: str, golden: Golden) -> None:
    """golden.pt: {'pred': int64 [N, 5], 'clean': :func:`clean_record`, 'shapes': GEMM shapes}."""
    record = {"pred": golden.pred, "clean": clean_record(golden), "shapes": golden.shapes}
    atomic_write(os.path.join(out_dir, GOLDEN), lambda f: torch.save(record, f))


def load_golden(out_dir: str, shapes: Optional[dict] = None) -> Optional[Golden]:
    """The golden run cached in a folder (None if there is none); ``shapes``:
    the GEMM shapes to use where the file lacks them."""
    path = os.path.join(out_dir, GOLDEN)
    if not os.path.exists(path):
        return None
    try:
        g = torch.load(path, weights_only=True)
        c = g["clean"]
        accuracy = Accuracy(int(c["n"]), *(float(c[k]) for k in ("top1", "top1_lo", "top1_hi", "top5", "top5_lo",
                                                                "top5_hi")), 1.0, 1.0, 1.0, 0.0, 0.0)
        pred = g["pred"]
        if not (isinstance(pred, torch.Tensor) and pred.dtype == torch.int64 and pred.dim() == 2
                and len(pred) == accuracy.n):
            raise ValueError("its predictions are not int64 [n, k]")
        return Golden(pred, accuracy, float(c["seconds"]), g.get("shapes") or dict(shapes or {}))
    except Exception as e:  # a damaged cache is redone, whatever the damage
        warnings.warn(f"{path!r} is damaged ({str(e).splitlines()[0] if str(e) else type(e).__name__}); "
                      "the golden run is done again", stacklevel=2)
        return None
