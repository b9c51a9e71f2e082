#!/usr/bin/env bash
# The runs behind README "Retraining after pruning" (issue 14), on the partial MNIST and CIFAR-10
# copies, on CPU. Usage: docs/retrain_runs.sh mnist|cifar SEED RUNS_ROOT
#   1. a dense run (T epochs, SGD, OpenLTH's step schedule)
#   2. 90 % in J = 3 prune-retrain phases (global magnitude at each phase's start), for each of
#      FT LRW SLR CLR LLR ALLR at a short and a long T_rt per phase
#   3. BIMP (dense phase with a linear LR, then 3 phases of ALLR) against OCP and AGP (linear LR),
#      at an equal total budget of B epochs, at 90 % and 95 %
# Then: python -m analysis.retrain RUNS_ROOT/<dataset>-* --out figures/retrain-<dataset>
# Usage: docs/retrain_runs.sh mnist|cifar|resnet20 SEED RUNS_ROOT [PARTS]
#   cifar: Conv-2 on CIFAR-10; resnet20: ResNet-20 on CIFAR-10
#   PARTS: any of schedules,budget (default both; the dense run is made either way)
set -euo pipefail
what=$1 seed=$2 root=$3 parts=${4:-schedules,budget}
py=${PYTHON:-python}
seeds=(--init-seed "$seed" --order-seed $((10 * seed + 1)) --augment-seed $((10 * seed + 2)))
# Zimmer et al.'s pruning: one global magnitude threshold over every conv and linear weight
common=(--data-dir "${DATA_DIR:-data}" --recipe openlth --eval-every 0 --no-progress
        --device cpu --runs-root "$root" "${seeds[@]}")
prune=(--scope global --layers all --layer-rate)
if [ "$what" = mnist ]; then
  # LeNet-300-100, 3,009 images, batch 64: 47 steps an epoch
  common+=(--preset mnist --lr 0.05)
  T=20 short=1 long=10 B=20
elif [ "$what" = resnet20 ]; then
  # ResNet-20 at 32x32 with crop+flip, 4,660 images, batch 64: 72 steps an epoch (~30 s on one
  # core); SGD 0.05 (OpenLTH: 0.1 at batch 128)
  common+=(--dataset cifar10 --model resnet20 --image-size 0 --augment crop_flip --lr 0.05 --batch-size 64)
  T=10 short=0.5 long=2 B=6
else
  # Conv-2 at 32x32 with crop+flip, 4,660 images, batch 64: 72 steps an epoch (~31 s on one core);
  # SGD 0.05 left it at chance (dead ReLUs after epoch 1), 0.01 trains
  common+=(--dataset cifar10 --model conv2 --image-size 0 --augment crop_flip --lr 0.01 --batch-size 64)
  T=10 short=0.5 long=2 B=6
fi
dense=$($py -m lth.run "${common[@]}" --schedule dense --epochs $T | sed -n 's/^run directory: //p')
if [[ ,$parts, == *,schedules,* ]]; then
  for rt in $short $long; do
    for lrs in ft lrw slr clr llr allr; do
      $py -m lth.run "${common[@]}" "${prune[@]}" --restart continue --from-run "$dense" --schedule one_shot \
          --start 0 --final-sparsity 0.9 --rounds 3 --epochs $rt --lr-schedule $lrs | tail -1
    done
  done
fi
if [[ ,$parts, == *,budget,* ]]; then
  for s in 0.9 0.95; do
    $py -m lth.bimp "${common[@]}" "${prune[@]}" --budget-epochs $B --dense-fraction 0.5 --rounds 3 \
        --final-sparsity $s --baselines ocp agp --baseline-lr-schedule linear | tail -5
  done
fi
