import os
from pathlib import Path

import pytest
import torch

CUDA = torch.cuda.is_available()
# Marks a test that needs a GPU: skipped without one, selected by `-m needs_cuda`.
needs_cuda = pytest.mark.needs_cuda

# The shared data folder beside the checkout (never copied into the project).
# PYVS_DATA overrides it; tests that need it skip when it is absent.
DATA = Path(os.environ.get("PYVS_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))


def cpu_and_cuda():
    """Device parameters: 'cpu' always, 'cuda' marked to skip without a GPU."""
    return ["cpu", pytest.param("cuda", marks=needs_cuda)]


def pytest_collection_modifyitems(config, items):
    skip = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "needs_cuda" in item.keywords and not CUDA:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def _restore_rng_state():
    """Seeds set inside a test never leak into the next one."""
    cpu = torch.get_rng_state()
    cuda = torch.cuda.get_rng_state_all() if CUDA else None
    threads = torch.get_num_threads()
    yield
    torch.set_rng_state(cpu)
    if cuda is not None:
        torch.cuda.set_rng_state_all(cuda)
    torch.set_num_threads(threads)
