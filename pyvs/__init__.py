"""pyvs: voltage scaling and timing-error injection for systolic-array DNN
accelerators.

Data flows one way: voltage -> error table (:mod:`pyvs.timing`) -> op
(:mod:`pyvs.ops`, reference in :mod:`pyvs.reference`) -> layer and model
(:mod:`pyvs.nn`) -> evaluation (:mod:`pyvs.evaluate`, :mod:`pyvs.experiment`)
-> report (:mod:`pyvs.sweep`, :mod:`pyvs.report`).
"""
import torch  # noqa: F401  (loads libc10/libtorch, which _C links against)

try:
    from . import _C  # noqa: F401
except ImportError as e:  # pragma: no cover - only on a broken install
    raise ImportError(
        "pyvs: the compiled extension pyvs._C could not be loaded "
        f"({e}). Build it with `pip install --no-build-isolation -e .` in the "
        "pyvs checkout, against the torch you run with."
    ) from e

from . import timing  # noqa: E402
from .nn import FaultConfig, convert, set_faults  # noqa: E402
from .ops import systolic_matmul  # noqa: E402

__version__ = "0.1.0"
__all__ = ["systolic_matmul", "convert", "FaultConfig", "set_faults", "timing"]
