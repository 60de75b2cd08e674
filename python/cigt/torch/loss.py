"""The information-gain routing loss (DESIGN.md section 2, models/README.md), in torch:
    L = sum over leaves of the mean cross-entropy of the rows that reached the leaf
        - lambda * sum over routers of IG_l
    IG = beta H(p(n)) + H(p(c)) - H(p(c,n)),   H(q) = -sum q log(q + 1e-30)
with p(c,n) = (1/M) sum_i onehot(c_i)[c] p_i(n) over the M rows at the router."""

import torch
import torch.nn.functional as F


def entropy(q):
    """H(q) = -sum q log(q + 1e-30), over every element of q."""
    return -(q * torch.log(q + 1e-30)).sum()


def information_gain(probs, labels, nclasses, beta):
    """IG of one router from its soft routes probs [M, K] and each row's label [M]."""
    M = probs.shape[0]
    if M == 0:
        return probs.sum() * 0
    onehot = F.one_hot(labels, nclasses).to(probs.dtype)
    pcn = onehot.t() @ probs / M  # [classes, K]
    return beta * entropy(pcn.sum(0)) + entropy(pcn.sum(1)) - entropy(pcn)


def loss(out, labels, ig_weight, ig_beta, parts=False):
    """The loss of a training forward pass (a TrellisOutput) for the batch's labels [N].
    ig_weight is lambda (train.information_gain_weight), ig_beta beta
    (train.information_gain_beta). With parts=True returns (loss, ce, [IG_l ...])."""
    labels = labels.to(out.logits.device).long()
    nclasses = out.logits.shape[1]
    leaf = out.path[:, -1]
    y = labels[out.sample]
    ce = out.logits.sum() * 0
    for j in torch.unique(leaf).tolist():  # empty leaves are skipped
        m = leaf == j
        ce = ce + F.cross_entropy(out.logits[m], y[m])
    igs = [information_gain(r.probs, labels[r.sample], nclasses, ig_beta) for r in out.routers]
    total = ce - ig_weight * sum(igs) if igs else ce
    return (total, ce, igs) if parts else total
