"""Per-layer voltage schedules: each layer of a model at its own supply.

One array runs a network's layers one after another, so its supply can
follow the layers (per-layer DVFS): a layer whose MACs err later can run
lower. A schedule is {layer name: V} for every systolic layer, in the
model's order. It is built (:func:`resolve`) from one voltage, or from a
dict whose keys are layer kinds (:func:`pyvs.nn.layers.layer_kinds`:
'stem', 'depthwise', 'expand', 'project', 'linear', ...) and/or layer
names, names overriding kinds, with 'default' for the layers neither names.

What a change of supply costs (:mod:`pyvs.costs`): the array waits
``ArrayConfig.dvfs_switch_ns`` while the regulator settles, for every change
between consecutive layers and from the last layer back to the first
(images follow one another; with ``ArrayConfig.batch`` images per weight
load, a batch shares the changes), and the regulator moves the charge of
the supply's decoupling capacitance,
``EnergyParams.supply_decap_f * |V_b^2 - V_a^2| / 2`` per change.
"""
from __future__ import annotations

import json
import math
import os
from typing import Dict, List, Mapping, Tuple, Union

Schedule = Dict[str, float]  # layer name -> supply, V, in the model's order
DEFAULT = "default"


def resolve(spec: Union[float, Mapping[str, float]], kinds: Mapping[str, str]) -> Schedule:
    """The schedule of the layers ``kinds`` ({name: kind}, the model's
    order) from ``spec``: one voltage (V) for all, or {kind or name or
    'default': V}. Unknown keys and layers left without a voltage are
    ValueErrors."""
    if isinstance(spec, bool):
        raise ValueError(f"a voltage schedule must be a voltage or a dict, got {spec!r}")
    if isinstance(spec, (int, float)):
        return {name: _volts(spec, name) for name in kinds}
    if not isinstance(spec, Mapping) or not spec:
        raise ValueError(f"a voltage schedule must be a voltage or a non-empty dict, got {spec!r}")
    known_kinds = set(kinds.values())
    unknown = sorted(k for k in spec if k != DEFAULT and k not in kinds and k not in known_kinds)
    if unknown:
        raise ValueError(f"voltage schedule: {unknown} are neither layers nor layer kinds of the model "
                         f"(kinds: {', '.join(sorted(known_kinds))})")
    out = {}
    for name, kind in kinds.items():
        key = name if name in spec else kind if kind in spec else DEFAULT if DEFAULT in spec else None
        if key is None:
            missing = [n for n, k in kinds.items() if n not in spec and k not in spec]
            raise ValueError(f"voltage schedule: no voltage for {len(missing)} layers (e.g. {missing[0]!r}); "
                             "name them, their kinds, or give 'default'")
        out[name] = _volts(spec[key], key)
    return out


def _volts(v, what: str) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not (math.isfinite(v) and v > 0):
        raise ValueError(f"voltage schedule: the supply of {what!r} must be a positive number of volts, got {v!r}")
    return float(v)


def transitions(schedule: Schedule) -> List[Tuple[float, float]]:
    """The changes of supply (from V, to V) of one inference: between
    consecutive layers, and from the last back to the first."""
    volts = list(schedule.values())
    return [(a, b) for a, b in zip(volts, volts[1:] + volts[:1]) if a != b]


def uniform(schedule: Schedule) -> bool:
    return len(set(schedule.values())) <= 1


def mean_voltage(schedule: Schedule, macs: Mapping[str, float]) -> float:
    """The MAC-weighted mean supply, V (what a result row's ``voltage``
    shows for a schedule)."""
    total = sum(macs[n] for n in schedule)
    return sum(v * macs[n] for n, v in schedule.items()) / total if total else 0.0


def by_kind(schedule: Schedule, kinds: Mapping[str, str]) -> Dict[str, List[float]]:
    """{kind: the distinct voltages of its layers, ascending}."""
    out: Dict[str, set] = {}
    for name, v in schedule.items():
        out.setdefault(kinds.get(name, "?"), set()).add(v)
    return {k: sorted(v) for k, v in out.items()}


def describe(schedule: Schedule, kinds: Mapping[str, str]) -> str:
    """'depthwise 0.51, expand 0.51, project 0.52, ...' (a kind whose layers
    differ shows its range)."""
    parts = []
    for kind, volts in by_kind(schedule, kinds).items():
        parts.append(f"{kind} {volts[0]:g}" if len(volts) == 1 else f"{kind} {volts[0]:g}-{volts[-1]:g}")
    return ", ".join(parts)


def parse(text: str) -> dict:
    """A schedule as the command line gives it: 'KEY=V,KEY=V' (keys: layer
    kinds, layer names, 'default') or the path of a JSON file {key: V}."""
    if not isinstance(text, str) or not text.strip():
        raise ValueError("a voltage schedule must be 'KIND=V,...' or a JSON file")
    if os.path.isfile(text):
        try:
            with open(text) as f:
                doc = json.load(f)
        except (OSError, ValueError) as e:
            raise ValueError(f"voltage schedule {text!r} is not a readable JSON file ({e})") from None
        if not isinstance(doc, dict):
            raise ValueError(f"voltage schedule {text!r} must hold a JSON object {{layer or kind: V}}")
        return doc
    out = {}
    for item in text.split(","):
        key, sep, value = item.partition("=")
        try:
            if not sep or not key.strip():
                raise ValueError
            out[key.strip()] = float(value)
        except ValueError:
            raise ValueError(f"voltage schedule: {item!r} is not KEY=VOLTS (e.g. expand=0.51)") from None
    return out


__all__ = ["Schedule", "resolve", "transitions", "uniform", "mean_voltage", "by_kind", "describe", "parse"]
