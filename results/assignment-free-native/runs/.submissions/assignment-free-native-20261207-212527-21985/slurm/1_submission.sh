#!/bin/bash

# Parameters
#SBATCH --array=0-33%2
#SBATCH --cpus-per-task=1
#SBATCH --error=/work/main/results/assignment-free-native/runs/.submissions/assignment-free-native-20261207-212527-21985/slurm/%A_%a_0_log.err
#SBATCH --job-name=harness-assignment-free-native
#SBATCH --mem=6GB
#SBATCH --nodes=1
#SBATCH --open-mode=append
#SBATCH --output=/work/main/results/assignment-free-native/runs/.submissions/assignment-free-native-20261207-212527-21985/slurm/%A_%a_0_log.out
#SBATCH --signal=USR2@90
#SBATCH --time=480
#SBATCH --wckey=submitit

# command
export SUBMITIT_EXECUTOR=slurm
srun --unbuffered --output /work/main/results/assignment-free-native/runs/.submissions/assignment-free-native-20261207-212527-21985/slurm/%A_%a_%t_log.out --error /work/main/results/assignment-free-native/runs/.submissions/assignment-free-native-20261207-212527-21985/slurm/%A_%a_%t_log.err /work/main/.venv/bin/python -u -m submitit.core._submit /work/main/results/assignment-free-native/runs/.submissions/assignment-free-native-20261207-212527-21985/slurm
