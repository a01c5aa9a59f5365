#!/bin/bash

# Parameters
#SBATCH --array=0-3%2
#SBATCH --cpus-per-task=1
#SBATCH --error=/work/main/results/screen-native/runs/.submissions/screen-native-20261206-233246-2334/slurm/%A_%a_0_log.err
#SBATCH --job-name=harness-screen-native
#SBATCH --mem=6GB
#SBATCH --nodes=1
#SBATCH --open-mode=append
#SBATCH --output=/work/main/results/screen-native/runs/.submissions/screen-native-20261206-233246-2334/slurm/%A_%a_0_log.out
#SBATCH --signal=USR2@90
#SBATCH --time=480
#SBATCH --wckey=submitit

# command
export SUBMITIT_EXECUTOR=slurm
srun --unbuffered --output /work/main/results/screen-native/runs/.submissions/screen-native-20261206-233246-2334/slurm/%A_%a_%t_log.out --error /work/main/results/screen-native/runs/.submissions/screen-native-20261206-233246-2334/slurm/%A_%a_%t_log.err /work/main/.venv/bin/python -u -m submitit.core._submit /work/main/results/screen-native/runs/.submissions/screen-native-20261206-233246-2334/slurm
