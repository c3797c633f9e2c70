#!/usr/bin/env bash
# Issue 29, item 6: what the noise models change. Every method plus the floor (probe) and the ceiling
# (clean_oracle) on flickr8k-clip, flickr8k-xception and synthetic, at 20% and 50% caption-level
# noise, under shuffle, neighbour and partial, seeds 0-2, each method with its recipe as shipped
# (recipes/; the methods without a recipe for a card train on their defaults), the vse_bow backbone
# on every card (synthetic's default vse_light is ~10x slower on a CPU). Then neighbour's k and
# ceiling varied on flickr8k-clip at 50%. Resumable: rerun to finish an interrupted sweep.
#
#   benchmarks/noise_models_sweep.sh [RESULTS_DIR] [DATA_ROOT]       (default: results-noise-models ../shared/data)
#
# Prints the boards' summary (python -m ncbench.report.noise_effect RESULTS_DIR) at the end;
# `ncbench leaderboard --results RESULTS_DIR` writes the full boards (one table per noise model).
set -euo pipefail
R=${1:-results-noise-models}
D=${2:-../shared/data}
METHODS=vanilla,ncr,bicro,crcl,decl,rcl,l2rm,cream
COMMON=(--methods "$METHODS" --references --backbones vse_bow --noise 0.2,0.5 --seeds 0,1,2
        --workers 2 --threads 1 --results "$R" --no-progress)
for dataset in flickr8k-clip flickr8k-xception synthetic; do
    root=(--data-root "$D")
    [ "$dataset" = synthetic ] && root=()  # embedded: generated in the cache, not read from --data-root
    for model in shuffle neighbour partial; do
        ncbench run --dataset "$dataset" "${root[@]}" --noise-model "$model" "${COMMON[@]}"
    done
done
# how the difficulty moves with neighbour's k and ceiling (flickr8k-clip, 50%)
for opt in k=3 k=30 ceiling=0.75 ceiling=1.0; do
    ncbench run --dataset flickr8k-clip --data-root "$D" --noise-model neighbour --noise-opt "$opt" \
        --methods vanilla,ncr,crcl --references --backbones vse_bow --noise 0.5 --seeds 0,1,2 \
        --workers 2 --threads 1 --results "$R" --no-progress
done
python -m ncbench.report.noise_effect "$R"
