"""The same GRAM training update written in plain torch, without Pyro (the reference for bench/speed.py).

It reuses the model's networks (``GRAM.encode/decode``, f_L, f_H, the prior and posterior heads) and
computes exactly the loss of ``gram_pyro.update.StepLoss`` for one supervision step: T transitions, the first
T−1 without gradient and drawn from the posterior, the prior or set to the prior mean (``truncated_from``), then
−log p(y | z_T) + β·[α·KL(sg q‖p) + (1−α)·KL(q‖sg p)] of the last transition, plus the halt and LPRM losses
(exact-match reward).  The balanced KL is one KL whose posterior tensors pass (1−α) and prior tensors α of
their gradient (``gram_pyro.elbo.grad_scaled``), as the ELBO computes it.  Only for benchmarks.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from gram_pyro.elbo import grad_scaled


def kl_normal(q_loc, q_scale, p_loc, p_scale):
    var_ratio = (q_scale / p_scale).pow(2)
    t1 = ((q_loc - p_loc) / p_scale).pow(2)
    return 0.5 * (var_ratio + t1 - 1 - var_ratio.log())


def handwritten_loss(gram, x, y, h, l, beta: float, alpha: float, generator: torch.Generator):
    """Loss of one supervision step from carry (h, l); returns (loss, next h, next l)."""
    c = gram.cfg
    e_x = gram.encode(x)
    e_y = gram.posterior.target_embedding(y)
    h, l = h.detach(), l.detach()
    for t in range(c.T):
        last = t == c.T - 1
        with torch.set_grad_enabled(last):
            for _ in range(c.K):
                l = gram.f_L(l + h + e_x)
            u = gram.f_H(h + l)
            if last or c.truncated_from == "posterior":
                loc, scale = q_loc, q_scale = gram.posterior.head(u + e_y)
            elif c.truncated_from == "prior_mean":  # truncated transition set to the prior mean: μ head only
                h = u + gram.prior.head.loc(u)
                continue
            else:  # truncated transition drawn from the prior
                loc, scale = gram.prior.head(u)
            h = u + loc + scale * torch.randn(u.shape, generator=generator)
    p_loc, p_scale = gram.prior.head(u)
    q_loc, q_scale = grad_scaled(q_loc, 1 - alpha), grad_scaled(q_scale, 1 - alpha)
    kl = kl_normal(q_loc, q_scale, grad_scaled(p_loc, alpha), grad_scaled(p_scale, alpha))
    logits = gram.decode(h)
    nll = F.cross_entropy(logits.flatten(0, -2), y.flatten(), reduction="sum")
    B = x.shape[0]
    reward = (logits.argmax(-1) == y).all(-1).float()
    aux = F.binary_cross_entropy_with_logits(gram.halt_logit(h), reward) + F.mse_loss(gram.value(h), reward)
    return (nll + beta * kl.sum()) / B + aux, h.detach(), l.detach()
