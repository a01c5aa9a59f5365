"""A real single-node Slurm on localhost for the tests: munge + slurmctld + slurmd in a temp folder.

Debian's slurm-wlm and munge (.ci/run installs them). The daemons get their
own key, sockets, ports, state and logs, so a Slurm already on the machine is
left alone, and only the daemons started here are stopped afterwards. Without
the binaries the tests skip, saying so; under CI=true they fail instead.
"""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

BINARIES = ('munged', 'slurmctld', 'slurmd', 'sbatch', 'squeue', 'scancel', 'sinfo')

CONF = """ClusterName=harnesstest
SlurmctldHost={host}(127.0.0.1)
SlurmUser={user}
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket={root}/munge.socket
CredType=cred/munge
StateSaveLocation={root}/state
SlurmdSpoolDir={root}/spool
SlurmctldPidFile={root}/slurmctld.pid
SlurmdPidFile={root}/slurmd.pid
SlurmctldLogFile={root}/slurmctld.log
SlurmdLogFile={root}/slurmd.log
SlurmctldPort={ctld_port}
SlurmdPort={d_port}
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
SchedulerType=sched/backfill
ReturnToService=2
MpiDefault=none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
KillWait=5
NodeName={host} NodeAddr=127.0.0.1 CPUs={cpus} RealMemory={mem} State=UNKNOWN
PartitionName=harness Nodes={host} Default=YES MaxTime=INFINITE State=UP
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def _unavailable(reason: str):
    if os.environ.get('CI'):
        pytest.fail(f'{reason}; .ci/run installs slurm-wlm and munge')
    pytest.skip(f'{reason} (apt-get install slurm-wlm munge)')


def start(root: Path) -> tuple[dict, list[Path]]:
    """Start munged, slurmctld, slurmd under ``root``; returns (environment for clients, pid files)."""
    missing = [b for b in BINARIES if shutil.which(b) is None]
    if missing:
        _unavailable(f'no {", ".join(missing)} on PATH')
    if os.geteuid() != 0:
        _unavailable('a test Slurm needs root (slurmd runs jobs as their users)')
    for sub in ('state', 'spool'):
        (root / sub).mkdir(parents=True)
    key = root / 'munge.key'
    key.write_bytes(os.urandom(1024))
    key.chmod(0o600)
    subprocess.run(['munged', '--force', f'--socket={root}/munge.socket', f'--key-file={key}',
                    f'--log-file={root}/munged.log', f'--pid-file={root}/munged.pid', f'--seed-file={root}/munge.seed'],
                   check=True)
    host = socket.gethostname().split('.')[0]
    mem = int(int(Path('/proc/meminfo').read_text().split()[1]) / 1024 * 0.8)
    conf = root / 'slurm.conf'
    conf.write_text(CONF.format(host=host, user='root', root=root, ctld_port=_free_port(), d_port=_free_port(),
                                cpus=os.cpu_count(), mem=mem))
    env = {**os.environ, 'SLURM_CONF': str(conf)}
    subprocess.run(['slurmctld', '-f', str(conf)], check=True, env=env)
    subprocess.run(['slurmd', '-f', str(conf)], check=True, env=env)
    pids = [root / 'slurmd.pid', root / 'slurmctld.pid', root / 'munged.pid']
    for _ in range(60):
        out = subprocess.run(['sinfo', '-h', '-o', '%t'], capture_output=True, text=True, env=env).stdout.split()
        if out and out[0] in ('idle', 'mix', 'alloc'):
            return env, pids
        time.sleep(0.5)
    stop(pids)
    raise RuntimeError(f'test Slurm did not come up: {(root / "slurmctld.log").read_text()[-2000:]}')


def stop(pids: list[Path]) -> None:
    """SIGTERM to the daemons this module started (from their pid files), then wait for them."""
    for pid_file in pids:
        try:
            pid = int(pid_file.read_text().strip())
            os.kill(pid, signal.SIGTERM)
        except (OSError, ValueError):
            continue
        for _ in range(50):
            try:
                os.kill(pid, 0)
            except OSError:
                break
            time.sleep(0.1)
