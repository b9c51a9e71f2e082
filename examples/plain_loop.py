"""IMP with One-Cycle Pruning in a plain PyTorch loop: lth.Pruner hooks the optimizer, the loop is yours.

    python examples/plain_loop.py --rounds 3 --epochs 4      # sklearn's digits, offline, seconds on a CPU
"""
import argparse
import logging

import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits
from torch.utils.data import DataLoader, TensorDataset

import lth
from lth.pruning.targets import round_targets

p = argparse.ArgumentParser()
p.add_argument("--rounds", type=int, default=3)
p.add_argument("--epochs", type=int, default=4)
p.add_argument("--rate", type=float, default=0.5)       # fraction of the remaining weights pruned per round
args = p.parse_args()
logging.basicConfig(level=logging.INFO, format="%(message)s")
torch.manual_seed(0)
x, y = load_digits(return_X_y=True)
x, y = torch.tensor(x, dtype=torch.float32) / 16, torch.tensor(y)
train = DataLoader(TensorDataset(x[:1400], y[:1400]), batch_size=50, shuffle=True)
model = torch.nn.Sequential(torch.nn.Linear(64, 300), torch.nn.ReLU(), torch.nn.Linear(300, 100), torch.nn.ReLU(),
                            torch.nn.Linear(100, 10))
init, masks = lth.snapshot(model), None                  # W0: every round rewinds to it
targets = round_targets(args.rounds, args.rate)          # s_0 = 0, s_r = 1 - (1 - rate)^r
for r in range(1, args.rounds + 1):
    lth.rewind(model, init, masks)                       # W0 * m_{r-1}
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    pruner = lth.Pruner(model, optimizer, schedule="ocp", initial_sparsity=targets[r - 1],
                        final_sparsity=targets[r], total_steps=args.epochs * len(train), layers="all", masks=masks)
    for epoch in range(args.epochs):                     # an ordinary loop: nothing lth-specific in it
        for xb, yb in train:
            loss = F.cross_entropy(model(xb), yb)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    with torch.no_grad():
        acc = (model(x[1400:]).argmax(1) == y[1400:]).float().mean().item()
    logging.info("round %d: sparsity %.4f (target %.4f), test acc %.4f", r, pruner.sparsity(), targets[r], acc)
    masks = pruner.masks.state_dict()
    pruner.remove()
