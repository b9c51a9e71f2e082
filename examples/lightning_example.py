"""One-Cycle Pruning in a PyTorch Lightning run: lth's callback, your LightningModule.

    pip install 'lth[lightning]'
    python examples/lightning_example.py --epochs 4 --final-sparsity 0.9
"""
import argparse
import logging

import lightning.pytorch as pl
import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits
from torch.utils.data import DataLoader, TensorDataset

from lth.integrations.lightning import LthPruning


class Classifier(pl.LightningModule):
    def __init__(self):
        super().__init__()
        self.net = torch.nn.Sequential(torch.nn.Linear(64, 300), torch.nn.ReLU(), torch.nn.Linear(300, 100),
                                       torch.nn.ReLU(), torch.nn.Linear(100, 10))

    def training_step(self, batch, index):
        x, y = batch
        return F.cross_entropy(self.net(x), y)

    def configure_optimizers(self):
        return torch.optim.AdamW(self.parameters(), lr=3e-3)


p = argparse.ArgumentParser()
p.add_argument("--epochs", type=int, default=4)
p.add_argument("--final-sparsity", type=float, default=0.9)
args = p.parse_args()
logging.basicConfig(level=logging.INFO, format="%(message)s")
logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)
pl.seed_everything(0, verbose=False)
x, y = load_digits(return_X_y=True)
x, y = torch.tensor(x, dtype=torch.float32) / 16, torch.tensor(y)
pruning = LthPruning(schedule="ocp", final_sparsity=args.final_sparsity, layers="all_but_output")
trainer = pl.Trainer(max_epochs=args.epochs, accelerator="cpu", callbacks=[pruning], logger=False,
                     enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)
model = Classifier()
trainer.fit(model, DataLoader(TensorDataset(x[:1400], y[:1400]), batch_size=50, shuffle=True))
with torch.no_grad():
    acc = (model.net(x[1400:]).argmax(1) == y[1400:]).float().mean().item()
for row in pruning.pruner.masks.report():
    logging.info("%-10s sparsity %.4f", row["name"], row["sparsity"])
logging.info("%d steps, test acc %.4f", pruning.pruner.step, acc)
