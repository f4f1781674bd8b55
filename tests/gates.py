"""Test helpers on the MAC's netlist: static timing of the sum bits and one
die's sampled gate delays (what the simulator's tests compare against)."""
import numpy as np

from pyvs.timing.datapath import arrivals, gate_delays


def static_arrivals(mac, delays):
    """Topologically longest path to each sum bit, in the delays' units."""
    arr = arrivals(mac, [int(d) for d in delays])
    return [arr[s] for s in mac.sums]


def sampled_delays(mac, tech, dt, rng):
    """One die's gate delays, N(d, (sigma_gate d)^2) each, in steps of dt (>= 1)."""
    d = np.array(gate_delays(mac, tech))
    return list(np.maximum(1, np.round(d * (1 + tech.sigma_gate * rng.standard_normal(len(d))) / dt)).astype(int))
