"""Test setup as in Pyro's own suite: validation on, a clean param store and a fixed seed per test."""

import pyro
import pytest
import torch


@pytest.fixture(autouse=True)
def _pyro_setup():
    pyro.enable_validation(True)
    pyro.clear_param_store()
    pyro.set_rng_seed(0)
    torch.set_flush_denormal(True)
    yield
    pyro.clear_param_store()
