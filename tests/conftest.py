"""Test setup as in Pyro's own suite: validation on, a clean param store and a fixed seed per test; the prior
registry as it was (an example or test that registers a prior cannot change another test's messages); one torch
thread for the whole session."""

import os

import pyro
import pytest
import torch

from gram_pyro.priors import PRIORS


@pytest.fixture(autouse=True, scope="session")
def _one_thread():
    """One torch thread in the test process and in every ``gram`` subprocess (``OMP_NUM_THREADS``, which
    ``setup_runtime`` reads; subprocesses inherit it).  The models here are tiny: a second thread only waits, and on
    a loaded 2-core machine each op then waits for a descheduled thread — one fixture took 47 s under load against
    0.4 s idle.  Tests about thread counts (X01, the kill -9 resume) set their own."""
    old_env, old_threads = os.environ.get("OMP_NUM_THREADS"), torch.get_num_threads()
    os.environ["OMP_NUM_THREADS"] = "1"
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old_threads)
    if old_env is None:
        os.environ.pop("OMP_NUM_THREADS", None)
    else:
        os.environ["OMP_NUM_THREADS"] = old_env


@pytest.fixture(autouse=True)
def _pyro_setup():
    pyro.enable_validation(True)
    pyro.clear_param_store()
    pyro.set_rng_seed(0)
    torch.set_flush_denormal(True)
    registered = dict(PRIORS)
    yield
    pyro.clear_param_store()
    PRIORS.clear()
    PRIORS.update(registered)
