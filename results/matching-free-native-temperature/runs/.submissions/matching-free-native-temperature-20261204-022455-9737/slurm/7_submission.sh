#!/bin/bash

# Parameters
#SBATCH --array=0-11%2
#SBATCH --cpus-per-task=1
#SBATCH --error=/work/studytree/results/matching-free-native-temperature/runs/.submissions/matching-free-native-temperature-20261204-022455-9737/slurm/%A_%a_0_log.err
#SBATCH --job-name=harness-matching-free-native-temperature
#SBATCH --mem=6GB
#SBATCH --nodes=1
#SBATCH --open-mode=append
#SBATCH --output=/work/studytree/results/matching-free-native-temperature/runs/.submissions/matching-free-native-temperature-20261204-022455-9737/slurm/%A_%a_0_log.out
#SBATCH --signal=USR2@90
#SBATCH --time=60
#SBATCH --wckey=submitit

# command
export SUBMITIT_EXECUTOR=slurm
srun --unbuffered --output /work/studytree/results/matching-free-native-temperature/runs/.submissions/matching-free-native-temperature-20261204-022455-9737/slurm/%A_%a_%t_log.out --error /work/studytree/results/matching-free-native-temperature/runs/.submissions/matching-free-native-temperature-20261204-022455-9737/slurm/%A_%a_%t_log.err /work/main/.venv/bin/python -u -m submitit.core._submit /work/studytree/results/matching-free-native-temperature/runs/.submissions/matching-free-native-temperature-20261204-022455-9737/slurm
