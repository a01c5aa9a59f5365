"""Where runs execute: this process (local) or a Slurm job array (slurm), optionally in a container."""
