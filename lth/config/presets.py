"""Named settings (`--preset`), each a set of flat names over the field defaults, with the source
it follows; from_overrides: a resolved config from flat names over a preset (studies, scripts)."""
from typing import Optional

from lth.config.sections import ResolvedConfig, RunConfig, apply_overrides, resolve
from lth.errors import LthError

PRESETS = {
    # The paper's LTH setting (section 5): ResNet-18, CIFAR-10 at 224 px, fastai augmentation,
    # the paper's recipe, 50 epochs a round. These are the field defaults.
    "paper": {},
    # The same at CIFAR's own 32x32 (about 50x cheaper a step; the setting lth.bench measures).
    "paper32": {"image_size": 0, "augment": "crop_flip"},
    # OpenLTH's CIFAR-10 ResNet-20 lottery-ticket setting: SGD, global magnitude pruning.
    "openlth": {"model": "resnet20", "image_size": 0, "augment": "crop_flip", "recipe": "openlth",
                "epochs": 160.0, "batch_size": 128, "scope": "global", "layers": "all_but_output"},
    # LeNet-300-100 on MNIST (Frankle & Carbin's first experiment), with the paper's recipe.
    # Measured on the 3,009-image MNIST copy, 2 shared CPU cores, 1 thread: an OCP round 7.5-8.1 s
    # with lth.run's evaluation every epoch; its training alone 2.6 s CPU, 2.0 s dense (lth.bench prune).
    # Frankle & Carbin prune the output layer at half the rate.
    "mnist": {"dataset": "mnist", "model": "lenet300_100", "image_size": 0, "augment": "none",
              "lr": 3e-3, "epochs": 20.0, "batch_size": 64, "layers": "all", "layer_rate": ("@output=0.5",)},
    # Offline and small: scikit-learn's digits, LeNet-300-100, a few epochs a round.
    # Measured on 2 shared CPU cores (load 8), 1 thread: 14 OCP rounds of 1.2 s, 38 s with start-up.
    "quick": {"dataset": "digits", "model": "lenet300_100", "image_size": 0, "augment": "none",
              "lr": 3e-3, "epochs": 10.0, "batch_size": 64, "eval_every": 5, "layers": "all",
              "layer_rate": ("@output=0.5",)},
    # ---- the field's flagship settings (issue 21); PRESET_SOURCES says where each comes from ----
    "imagenet_resnet50": {
        "dataset": "imagenet", "model": "torchvision:resnet50", "image_size": 224, "augment": "fastai",
        "recipe": "openlth", "lr": 0.4, "batch_size": 1024, "epochs": 90.0, "weight_decay": 1e-4,
        "warmup": 5 / 90, "milestones": (30 / 90, 60 / 90, 80 / 90), "gamma": 0.1, "eval_every": 5,
        "schedule": "imp", "scope": "global", "layers": "all", "rate": 0.2, "init": "openlth",
        "restart": "rewind", "rewind_step": 6 * (1281167 // 1024)},   # k = 6 epochs of 1,251 steps
    # Checked against OpenLTH's models/imagenet_resnet.py default_hparams (model_init=kaiming_normal,
    # batchnorm_init=uniform, i.e. lth's "openlth" init; sparse_global 0.2 with no layer ignored, so
    # unlike OpenLTH's CIFAR models the fc layer is pruned too).
    "vit": {
        "dataset": "imagenet", "model": "timm:deit_small_patch16_224", "image_size": 224, "augment": "fastai",
        "recipe": "paper", "optimizer": "adamw", "lr": 1e-3, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8,
        "weight_decay": 0.05, "decay_bn_bias": False, "lr_schedule": "one_cycle", "warmup": 5 / 300,
        "div": 1000.0, "div_final": 100.0, "moms": (), "batch_size": 1024, "epochs": 300.0, "eval_every": 10,
        "schedule": "imp", "scope": "global", "layers": "all_but_output", "rate": 0.2},
    # Chen et al. 2020: the pre-trained BERT-base (Hub id; or hf:DIR of a save_pretrained copy)
    # fine-tuned on a GLUE task (--dataset glue:TASK) at 128 tokens, with the model's tokenizer;
    # W0 is the pre-trained network, so --restart rewind (k = 0) rewinds to the pre-trained weights.
    "bert": {
        "dataset": "glue:sst2", "max_length": 128, "model": "hf:bert-base-uncased", "augment": "none", "recipe": "paper", "optimizer": "adamw", "lr": 2e-5,
        "beta1": 0.9, "beta2": 0.999, "eps": 1e-8, "weight_decay": 0.01, "decay_bn_bias": False,
        "lr_schedule": "linear", "warmup": 0.0, "batch_size": 32, "epochs": 3.0,
        "schedule": "imp", "scope": "global", "layers": "all_but_output", "rate": 0.1, "restart": "rewind"},
}

# Where each flagship preset comes from, and what of its source lth does not reproduce
# (printed by `python -m lth.run --preset NAME --dry-run`).
PRESET_SOURCES = {
    "imagenet_resnet50": (
        "Frankle et al. 2020, 'Linear Mode Connectivity and the Lottery Ticket Hypothesis', and OpenLTH's "
        "imagenet_resnet_50 defaults: ResNet-50, 90 epochs, batch 1024, SGD lr 0.4 momentum 0.9, wd 1e-4, 5 warm-up "
        "epochs, x0.1 at epochs 30/60/80, OpenLTH's init (kaiming normal, BatchNorm weights U(0, 1)); IMP with "
        "global magnitude pruning of 20% a round over every conv and linear weight, fc included (OpenLTH's "
        "ImageNet default ignores no layer), "
        "late rewinding to epoch k = 6 (vary --rewind-step: the k at which tickets become stable is what that "
        "paper measures). Not reproduced: RandomResizedCrop (lth's batched fastai augmentation stands in); "
        "the dataset is the ILSVRC layout under --data-dir"),
    "vit": (
        "Touvron et al. 2021, 'Training data-efficient image transformers' (DeiT-S): 300 epochs, batch 1024, "
        "AdamW lr 5e-4 x batch/512, wd 0.05, 5 warm-up epochs from 1e-6, cosine to 1e-5; IMP as OpenLTH "
        "(global, 20% a round, head dense). Not reproduced: RandAugment, Mixup/CutMix, label smoothing, "
        "random erasing, stochastic depth (lth's fastai augmentation stands in); the warm-up is fastai's cosine ramp, not "
        "timm's linear one, and timm's 10 cool-down epochs at 1e-5 are left out"),
    "bert": (
        "Chen et al. 2020, 'The Lottery Ticket Hypothesis for Pre-trained BERT Networks': pre-trained BERT-base "
        "(hf:bert-base-uncased, loaded by transformers from the Hub or its cache; hf:DIR for a local copy) with "
        "its tokenizer, fine-tuned on a GLUE task (glue:sst2 here; --dataset glue:mnli, qnli, qqp, rte, mrpc, cola) "
        "at 128 tokens, 3 epochs, batch 32, AdamW lr 2e-5 with linear decay; IMP pruning 10% a round, globally, "
        "of the encoder (embeddings and the classifier dense), every round rewound to the pre-trained weights "
        "(W0 = the pre-trained encoder with a new classification head drawn from --init-seed, which rewinds "
        "with it; --restart rewind). Not reproduced: GLUE's test server (the validation split is the test "
        "split); STS-B (regression) and SQuAD (span extraction), which are no classification tasks; the tickets "
        "found on the masked-language-model pre-training task; one task a run (a study's grid spans tasks); "
        "14 rounds of 10% reach 77% sparsity (raise --rounds for more)"),
}


def from_overrides(overrides: dict, preset: Optional[str] = None) -> "ResolvedConfig":
    """A resolved, validated config from flat names (as in PRESETS) over an optional preset:
    how a study or a script describes a run."""
    cfg = RunConfig()
    if preset is not None:
        if preset not in PRESETS:
            raise LthError(f"unknown preset {preset!r}; choose one of {', '.join(sorted(PRESETS))}")
        apply_overrides(cfg, PRESETS[preset], f"preset {preset}")
    apply_overrides(cfg, overrides, "overrides")
    return resolve(cfg)
