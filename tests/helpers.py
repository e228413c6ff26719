"""Small fixtures shared by the tests."""

import contextlib
import os

import torch

from gram_pyro import GRAM, GRAMConfig


def tiny_config(**kw) -> GRAMConfig:
    base = dict(vocab_size=6, seq_len=5, out_len=4, n_prefix=1, D=16, n_heads=2, D_h=16, K=2, T=3, N_sup=2, beta=0.3)
    return GRAMConfig(**{**base, **kw})


def tiny(**kw) -> GRAM:
    return GRAM(tiny_config(**kw))


def batch(B: int = 3, cfg: GRAMConfig | None = None, seed: int = 0):
    cfg = cfg or tiny_config()
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(1, cfg.vocab_size, (B, cfg.seq_len), generator=g)
    y = torch.randint(2, cfg.vocab_size, (B, cfg.L_out), generator=g)
    return x, y


def perturb_heads(gram, scale: float = 0.1) -> None:
    """Move the Gaussian heads off their init (where μ = 0 and σ is constant) so they depend on u."""
    with torch.no_grad():
        for p in [*gram.prior.parameters(), *gram.posterior.parameters()]:
            p.add_(scale * torch.randn_like(p))


@contextlib.contextmanager
def tiny_toy_run(root, sets):
    """A trained tiny toy-perm-4 run at ``root/toy`` with the dataset cache under ``root/cache``, one torch thread
    (tiny models: a second thread only adds contention); the environment is restored afterwards."""
    from gram_cli import api

    old, threads = os.environ.get("GRAM_CACHE"), torch.get_num_threads()
    os.environ["GRAM_CACHE"] = str(root / "cache")
    torch.set_num_threads(1)
    try:
        api.fit("toy-perm-4", root / "toy", "cpu-tiny", sets, progress=False)
        yield root / "toy"
    finally:
        torch.set_num_threads(threads)
        if old is None:
            os.environ.pop("GRAM_CACHE", None)
        else:
            os.environ["GRAM_CACHE"] = old
