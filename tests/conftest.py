"""Shared test setup: thread count, the `gpu` marker's auto-skip, and the transformers reference fixture."""

from __future__ import annotations

import os

import pytest
import torch

# The reference's samplers draw a tqdm bar per token; keep CI logs readable.
os.environ.setdefault("TQDM_DISABLE", "1")

# The CI machine has 2 cores; more threads only add contention between pytest and torch.
torch.set_num_threads(2)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip every `@pytest.mark.gpu` test where CUDA is not available."""
    if torch.cuda.is_available():
        return
    skip_gpu = pytest.mark.skip(reason="needs CUDA: torch.cuda.is_available() is false")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip_gpu)


@pytest.fixture(scope="session")
def hf_jukebox():
    """The reference Jukebox of transformers (the test extra pins 4.40.2), as the `transformers` module:
    `hf_jukebox.JukeboxConfig`, `.JukeboxModel`, `.JukeboxVQVAE`, `.JukeboxPrior`, `.JukeboxTokenizer`.
    Skips the test where transformers is not installed."""
    transformers = pytest.importorskip("transformers")
    if not hasattr(transformers, "JukeboxModel"):
        pytest.skip(f"transformers {transformers.__version__} has no Jukebox; install the test extra (4.40.2)")
    return transformers
