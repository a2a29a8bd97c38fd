"""Setup shared by the fault tests."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

# fault_support is imported by name; the name is unique in the test tree.
sys.path.insert(0, str(Path(__file__).parent))


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny models run fastest on one thread, and the machine is shared with other work."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
