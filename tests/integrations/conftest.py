"""Setup shared by the integration tests."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

# Helper modules here are imported by name, also by the DDP worker script; their names
# (integration_support, lightning_task) are unique in the test tree.
sys.path.insert(0, str(Path(__file__).parent))


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny models run fastest on one thread, and the folder shares two cores with others."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
