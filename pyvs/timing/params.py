"""Every constant of the timing model, in one place, with where it comes from.

The seed paper publishes none of its technology parameters, so these are
ours. They describe a generic 28 nm-class bulk CMOS process at the array's
nominal supply (:class:`pyvs.hardware.ArrayConfig`, 0.9 V); the model is
calibrated so that there the MAC's worst-case path meets the clock with a
stated guard-band, which makes absolute gate delays drop out. What remains and matters is the *shape* of delay versus
voltage (Vth, alpha), the guard-band, and the delay variation.
"""
from __future__ import annotations

import dataclasses

from ..checks import number


CORNERS = {"slow": 3.0, "typical": 0.0, "fast": -3.0}  # die-to-die Vth shift, in sigma_vth_die


@dataclasses.dataclass(frozen=True)
class TechParams:
    """Technology and design parameters of the PE timing model.

    Attributes:
        node: a label only; no number is derived from it.
        vth: threshold voltage of the alpha-power law, volts. 0.30 V: the
            range of effective Vth that alpha-power fits of 28-45 nm bulk
            CMOS report (0.25-0.40 V); low enough that 0.5 V is above
            threshold, as the paper's 0.5 V operating point requires.
        alpha: velocity-saturation index of the alpha-power law
            (Sakurai & Newton, IEEE JSSC 1990): 2 for long channels, 1.2-1.5
            for short-channel devices; 1.3 here.
        guard_band: timing margin at nominal voltage, as a fraction of the
            worst-case path delay: the clock period is (1 + guard_band) times
            the worst-case path of the ripple-carry MAC at the nominal supply
            and the typical corner (other adders share that clock). The most influential
            assumption of the model (see the README's sensitivity table).
            1.0 makes the unit gate delay at 0.9 V come out at
            1/(0.7 GHz) / (2 * 58 gate delays) = 12.3 ps on the event
            model's 9 x 8 ripple-carry MAC (12.9 ps, 55.5 delays, on the
            static model's 8 x 8), the FO4 delay of
            28 nm-class bulk CMOS (10-15 ps): a MAC of this depth closes
            timing near 1.4 GHz at 0.9 V, and 0.7 GHz (TPU v1's clock) leaves
            it half the period as slack. 0.1 would be a tight sign-off margin.
        sigma_gate: within-die random variation, sigma/mu of each gate's
            delay, independent per gate and per evaluation. 5 %, the order
            of random (local) delay variation reported for 28-45 nm logic at
            nominal supply. Taken independent of voltage (it grows near
            threshold in reality, which would make low-voltage errors more
            likely than this model says).
        d_and, d_or, d_xor, d_mux: delay of each gate kind in units of the
            technology's gate delay d(V). Ratios in the spirit of logical
            effort (Sutherland, Sproull & Harris, 1999): XOR is slower than
            a simple gate; a transmission-gate MUX on the carry path is as
            fast as a simple gate.
        corner: the die's process corner, one of :data:`CORNERS`: a
            die-to-die shift of the threshold voltage by 'slow' +3, 'typical'
            0, 'fast' -3 sigma_vth_die, the same for every gate of the die.
            The clock is designed at the typical corner, so a slow die at
            the nominal supply already spends part of the guard-band. The
            shift enters through the alpha-power law, so it stretches delays
            far more near threshold than at 0.9 V.
        sigma_vth_die: die-to-die (global) sigma of the threshold voltage,
            V. 0.02 V puts the slow and fast corners at +15 % / -12 % of the
            typical delay at 0.9 V, the spread of the SS/FF corners of
            28 nm-class processes (about +-10-20 %), and at +51 % / -27 %
            at 0.52 V. The shift's effect on leakage is not modelled
            (:mod:`pyvs.energy` prices the typical die).
    """

    node: str = "generic 28 nm-class bulk CMOS (assumed)"
    vth: float = 0.30
    alpha: float = 1.3
    guard_band: float = 1.0
    sigma_gate: float = 0.05
    d_and: float = 1.0
    d_or: float = 1.0
    d_xor: float = 1.5
    d_mux: float = 1.0
    corner: str = "typical"
    sigma_vth_die: float = 0.02

    def __post_init__(self):
        for name in ("alpha", "d_and", "d_or", "d_xor", "d_mux"):
            number(getattr(self, name), f"TechParams.{name}", positive=True)
        if self.corner not in CORNERS:
            raise ValueError(f"unknown process corner {self.corner!r}; known: {', '.join(CORNERS)}")
        if not 0 <= number(self.sigma_vth_die, "TechParams.sigma_vth_die") <= 0.1:
            raise ValueError(f"TechParams.sigma_vth_die must be in [0, 0.1] V, got {self.sigma_vth_die!r}")
        number(self.guard_band, "TechParams.guard_band", minimum=0.0)
        if not 0 <= number(self.sigma_gate, "TechParams.sigma_gate") < 0.5:
            raise ValueError(f"TechParams.sigma_gate must be in [0, 0.5), got {self.sigma_gate!r}")
        number(self.vth, "TechParams.vth", minimum=0.0)  # below the nominal supply: check_voltages

    def gate_delay(self, kind: str) -> float:
        """Delay of a gate kind ('and', 'nand', 'or', 'xor', 'mux'), in units of d(V)."""
        return {"and": self.d_and, "nand": self.d_and, "or": self.d_or,
                "xor": self.d_xor, "mux": self.d_mux}[kind]

    @property
    def vth_die(self) -> float:
        """The threshold voltage of this corner's die, V."""
        return self.vth + CORNERS[self.corner] * self.sigma_vth_die

    def relative_delay(self, volts, v_nominal: float) -> "float":
        """d(V) / d(v_nominal) by the alpha-power law d(V) = k V / (V - Vth)^alpha:
        the die's delay at ``volts`` over the typical die's at the nominal
        supply, where the clock is designed."""
        def d(v, vth):
            return v / (v - vth) ** self.alpha
        return d(volts, self.vth_die) / d(v_nominal, self.vth)

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


DEFAULT = TechParams()
