"""The Lightning and Hugging Face Trainer adapters of lth.Pruner, with the real libraries on a
tiny model on the CPU: the same per-step sparsity trajectory as lth.Pruner in a plain loop
(tests/test_pruner.py ties that to `lth run`), the exact final target, pruned weights and their
optimizer state at zero under gradient clipping, and the schedule resumed from a checkpoint.

    python -m pytest tests/test_integrations.py -q
"""
import logging

import pytest
import torch
import torch.nn.functional as F

import lth
from lth import models
from lth.data import datasets

STEPS, FINAL, SCHEDULE = 24, 0.8, "agp"


@pytest.fixture(scope="module")
def digits():
    ds = datasets.load("digits")
    return ds.train_x.float().div(16.0), ds.train_y


def lenet():
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return models.build("lenet300_100", 10, 1, 8)


def plain_trajectory(digits, layers):
    """The counts each step trains under, with lth.Pruner in a plain loop."""
    x, y = digits
    model = lenet()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    pruner = lth.Pruner(model, optimizer, schedule=SCHEDULE, final_sparsity=FINAL, total_steps=STEPS, layers=layers)
    seen = []
    for k in range(STEPS):
        seen.append(pruner.masks.pruned_counts())
        optimizer.zero_grad()
        F.cross_entropy(model(x[32 * k:32 * k + 32]), y[32 * k:32 * k + 32]).backward()
        optimizer.step()
    return seen, pruner.masks.pruned_counts()


def assert_masked(pruner, optimizer):
    for param, mask in zip(pruner.masks.params, pruner.masks.tensors):
        assert torch.all(param[mask == 0] == 0)
        for value in optimizer.state[param].values():
            if torch.is_tensor(value) and value.shape == param.shape:
                assert torch.all(value[mask == 0] == 0)


# ---- Lightning ----------------------------------------------------------------------------------

def lightning_fit(digits, callback, max_steps, ckpt_path=None, save=None):
    import lightning.pytorch as pl
    from torch.utils.data import DataLoader, TensorDataset

    class Module(pl.LightningModule):
        def __init__(self):
            super().__init__()
            self.net, self.seen = lenet(), []

        def training_step(self, batch, index):
            self.seen.append(callback.pruner.masks.pruned_counts())   # the mask this step trains under
            x, y = batch
            return F.cross_entropy(self.net(x), y)

        def configure_optimizers(self):
            return torch.optim.AdamW(self.parameters(), lr=1e-3)

    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    module = Module()
    trainer = pl.Trainer(accelerator="cpu", devices=1, max_steps=max_steps, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, gradient_clip_val=0.5,
                         num_sanity_val_steps=0, callbacks=[callback])
    loader = DataLoader(TensorDataset(*digits), batch_size=32, shuffle=False)
    trainer.fit(module, loader, ckpt_path=ckpt_path)
    if save is not None:
        trainer.save_checkpoint(save)
    return module, trainer


def test_lightning_follows_the_schedule(digits):
    from lth.integrations.lightning import LthPruning
    callback = LthPruning(schedule=SCHEDULE, final_sparsity=FINAL, layers="all")
    module, trainer = lightning_fit(digits, callback, STEPS)
    reference, end = plain_trajectory(digits, "all")
    assert module.seen == reference and callback.pruner.masks.pruned_counts() == end
    assert callback.pruner.sparsity() == pytest.approx(FINAL, abs=1e-4) and callback.pruner.step == STEPS
    assert_masked(callback.pruner, trainer.optimizers[0])


def test_lightning_resumes_the_schedule_from_its_checkpoint(digits, tmp_path):
    from lth.integrations.lightning import LthPruning
    first = LthPruning(schedule=SCHEDULE, final_sparsity=FINAL, layers="all", total_steps=STEPS)
    lightning_fit(digits, first, 10, save=tmp_path / "ten.ckpt")
    at_ten = first.pruner.masks.state_dict()
    resumed = LthPruning(schedule=SCHEDULE, final_sparsity=FINAL, layers="all", total_steps=STEPS)
    module, _ = lightning_fit(digits, resumed, STEPS, ckpt_path=tmp_path / "ten.ckpt")
    reference, end = plain_trajectory(digits, "all")
    assert module.seen[0] == reference[10]   # the restored mask and step, not a fresh schedule
    assert sum(module.seen[0]) == sum(int((~m).sum()) for m in at_ten.values())
    assert module.seen == reference[10:] and resumed.pruner.masks.pruned_counts() == end


# ---- Hugging Face Trainer -----------------------------------------------------------------------

class Classifier(torch.nn.Module):
    """A transformers-style model: forward(x, labels) -> {"loss", "logits"}."""

    def __init__(self, record):
        super().__init__()
        self.net, self.record = lenet(), record

    def forward(self, x, labels=None):
        if self.training:
            self.record()
        logits = self.net(x)
        return {"loss": F.cross_entropy(logits, labels), "logits": logits}


def hf_train(digits, callback, tmp_path, resume=None):
    import transformers
    x, y = digits
    data = [{"x": x[i], "labels": y[i]} for i in range(32 * STEPS)]
    seen = []
    model = Classifier(lambda: seen.append(callback.pruner.masks.pruned_counts()))
    args = transformers.TrainingArguments(output_dir=str(tmp_path), max_steps=STEPS, per_device_train_batch_size=32,
                                          learning_rate=1e-3, max_grad_norm=0.5, report_to=[], save_strategy="steps",
                                          save_steps=10, logging_strategy="no", use_cpu=True, disable_tqdm=True,
                                          seed=0, lr_scheduler_type="constant", dataloader_num_workers=0)
    trainer = transformers.Trainer(model=model, args=args, train_dataset=data, callbacks=[callback])
    trainer.train(resume_from_checkpoint=resume)
    return seen, trainer


def test_hugging_face_trainer_follows_the_schedule_and_resumes(digits, tmp_path):
    from lth.integrations.huggingface import STATE_FILE, LthPruningCallback
    transformers_logging = logging.getLogger("transformers")
    transformers_logging.setLevel(logging.ERROR)
    callback = LthPruningCallback(schedule=SCHEDULE, final_sparsity=FINAL)   # layers: all_but_output
    seen, trainer = hf_train(digits, callback, tmp_path / "full")
    reference, end = plain_trajectory(digits, "all_but_output")
    assert seen == reference and callback.pruner.masks.pruned_counts() == end
    assert callback.pruner.sparsity() == pytest.approx(FINAL, abs=1e-4)
    assert_masked(callback.pruner, callback.pruner.optimizer)
    assert (tmp_path / "full" / "checkpoint-10" / STATE_FILE).exists()

    resumed = LthPruningCallback(schedule=SCHEDULE, final_sparsity=FINAL)
    seen, _ = hf_train(digits, resumed, tmp_path / "full", resume=str(tmp_path / "full" / "checkpoint-10"))
    assert seen == reference[10:] and resumed.pruner.masks.pruned_counts() == end


def test_hugging_face_refuses_a_checkpoint_without_pruner_state(digits, tmp_path):
    from lth.errors import LthError
    from lth.integrations.huggingface import STATE_FILE, LthPruningCallback
    callback = LthPruningCallback(schedule=SCHEDULE, final_sparsity=FINAL)
    hf_train(digits, callback, tmp_path)
    (tmp_path / "checkpoint-10" / STATE_FILE).unlink()
    with pytest.raises(LthError, match="lth_pruner.pt is missing"):
        hf_train(digits, LthPruningCallback(schedule=SCHEDULE, final_sparsity=FINAL), tmp_path,
                 resume=str(tmp_path / "checkpoint-10"))
