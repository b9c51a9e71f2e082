"""One-Cycle Pruning in a Hugging Face Trainer run: lth's TrainerCallback, a tiny BERT built from a config.

    pip install 'lth[hf]'
    python examples/hf_trainer_example.py --steps 60 --final-sparsity 0.8

The task is synthetic (is token 7 in the sequence?), made in-process: no download.
"""
import argparse
import logging
import tempfile

import torch
import transformers

from lth.integrations.huggingface import LthPruningCallback

p = argparse.ArgumentParser()
p.add_argument("--steps", type=int, default=60)
p.add_argument("--final-sparsity", type=float, default=0.8)
args = p.parse_args()
logging.basicConfig(level=logging.INFO, format="%(message)s")
transformers.logging.set_verbosity_error()
torch.manual_seed(0)
config = transformers.BertConfig(vocab_size=32, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                 intermediate_size=64, max_position_embeddings=16, num_labels=2)
model = transformers.BertForSequenceClassification(config)
ids = torch.randint(8, 32, (1024, 12))
ids[::2, 5] = 7                                            # half the sequences hold token 7
data = [{"input_ids": row, "labels": int((row == 7).any())} for row in ids]
pruning = LthPruningCallback(schedule="ocp", final_sparsity=args.final_sparsity, layers="all_but_output")
with tempfile.TemporaryDirectory() as out:
    training = transformers.TrainingArguments(output_dir=out, max_steps=args.steps, per_device_train_batch_size=32,
                                              learning_rate=3e-3, report_to=[], save_strategy="no", use_cpu=True,
                                              disable_tqdm=True, logging_strategy="no", seed=0)
    trainer = transformers.Trainer(model=model, args=training, train_dataset=data[:768], eval_dataset=data[768:],
                                   callbacks=[pruning],
                                   compute_metrics=lambda p: {"acc": float((p.predictions.argmax(-1) == p.label_ids).mean())})
    trainer.train()
    metrics = trainer.evaluate()
report = pruning.pruner.masks.report()
logging.info("%d pruned matrices, e.g. %s: sparsity %.4f", len(report) - 1, report[0]["name"], report[0]["sparsity"])
logging.info("%d steps, overall sparsity %.4f, eval acc %.4f", pruning.pruner.step, report[-1]["sparsity"],
             metrics["eval_acc"])
