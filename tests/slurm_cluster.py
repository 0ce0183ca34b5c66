"""A one-node SLURM cluster on loopback, from Debian's packages, for the profile test.

`install_slurm()` installs slurmctld, slurmd, slurm-client and munge with apt-get when
they are missing (CI runs as root with Debian's registry reachable) and raises with the
apt-get output when it cannot. `OneNodeCluster` writes /etc/slurm/slurm.conf (putting
back any previous one when it stops) with its state in a scratch directory, starts
munged, slurmctld and slurmd in the foreground as child processes (no systemd here) and
stops exactly those processes, by pid.

Facts this relies on (Debian 12, SLURM 22.05): without cgroups, process tracking and
task binding must be `proctrack/linuxproc` and `task/none`; `select/cons_tres` with
`CR_Core_Memory` and a `DefMemPerCPU` lets several jobs share the node (otherwise one
job takes the whole node); there is no accounting database (slurmdbd), so clients must
use squeue, which keeps finished jobs for `MinJobAge` seconds.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

PACKAGES = ["slurmctld", "slurmd", "slurm-client", "munge"]
DAEMONS = ["munged", "slurmctld", "slurmd", "sbatch", "squeue"]
SYSTEM_CONF = Path("/etc/slurm/slurm.conf")


def daemon_path(name: str) -> str | None:
    """Executable path (the daemons live in /usr/sbin, not always on a root-less PATH)."""
    return shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/bin:/sbin:/bin")


def install_slurm() -> None:
    """Install SLURM and munge with apt-get if any of them is missing; raise if impossible."""
    if all(daemon_path(name) for name in DAEMONS):
        return
    if os.geteuid() != 0:
        raise RuntimeError(f"SLURM is not installed and apt-get needs root: install {PACKAGES}")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in (
        ["apt-get", "update", "-qq"],
        ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *PACKAGES],
    ):
        result = subprocess.run(command, capture_output=True, text=True, env=env)
        if result.returncode != 0:
            raise RuntimeError(
                f"{' '.join(command)} failed ({result.returncode}):\n"
                f"{result.stdout[-2000:]}\n{result.stderr[-2000:]}"
            )
    missing = [name for name in DAEMONS if not daemon_path(name)]
    if missing:
        raise RuntimeError(f"apt-get installed {PACKAGES} but {missing} is still missing")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class OneNodeCluster:
    """munged + slurmctld + slurmd on 127.0.0.1, configured under `root`."""

    def __init__(self, root: Path, cpus: int, memory_mb: int, min_job_age_s: int = 300):
        self.root = Path(root)
        self.host = socket.gethostname().split(".")[0]  # slurmd finds its node by `hostname -s`
        self.cpus = cpus
        self.memory_mb = memory_mb
        self.min_job_age_s = min_job_age_s
        # The config must sit at SLURM's compiled-in path: Snakemake's job-step plugin
        # clears every SLURM_* variable (SLURM_CONF too) before its srun inside a job.
        # A config already there is put back by stop().
        self.conf = SYSTEM_CONF
        self.saved_conf = self.root / "slurm.conf.saved"
        self.processes: dict[str, subprocess.Popen] = {}

    @property
    def env(self) -> dict[str, str]:
        """Environment for SLURM clients (sbatch, squeue, and Snakemake's plugin)."""
        return {**os.environ, "SLURM_CONF": str(self.conf)}

    def write_config(self) -> None:
        for name in ("state", "spool", "munge"):
            (self.root / name).mkdir(parents=True, exist_ok=True)
        r = self.root
        if self.conf.exists():
            shutil.copy2(self.conf, self.saved_conf)
        self.conf.parent.mkdir(parents=True, exist_ok=True)
        self.conf.write_text(
            f"""ClusterName=saesanitytest
SlurmctldHost={self.host}(127.0.0.1)
SlurmctldPort={free_port()}
SlurmdPort={free_port()}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket={r}/munge/munge.socket.2
StateSaveLocation={r}/state
SlurmdSpoolDir={r}/spool
SlurmctldPidFile={r}/slurmctld.pid
SlurmdPidFile={r}/slurmd.pid
SlurmctldLogFile={r}/slurmctld.log
SlurmdLogFile={r}/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=500
MinJobAge={self.min_job_age_s}
ReturnToService=2
SchedulerType=sched/backfill
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
MpiDefault=none
NodeName={self.host} NodeAddr=127.0.0.1 CPUs={self.cpus} RealMemory={self.memory_mb} State=UNKNOWN
PartitionName=test Nodes={self.host} Default=YES MaxTime=INFINITE State=UP
"""
        )

    def start(self, timeout_s: float = 60) -> None:
        self.write_config()
        munge_dir = self.root / "munge"
        shutil.chown(munge_dir, "munge", "munge")
        # munged refuses to run as root; it runs in the foreground (-F) as the munge
        # user, with its socket in our scratch directory (no clash with a system munged).
        self.processes["munged"] = subprocess.Popen(
            [daemon_path("munged"), "-F", "--force",
             f"--socket={munge_dir}/munge.socket.2", f"--pid-file={munge_dir}/munged.pid",
             f"--log-file={munge_dir}/munged.log", f"--seed-file={munge_dir}/munged.seed"],
            user="munge", group="munge", stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
        )  # fmt: skip
        self._wait_for(lambda: (munge_dir / "munge.socket.2").exists(), "munged socket", 20)
        for daemon in ("slurmctld", "slurmd"):
            log = open(self.root / f"{daemon}.stdout", "w")  # noqa: SIM115 (kept open by child)
            self.processes[daemon] = subprocess.Popen(
                [daemon_path(daemon), "-D", "-f", str(self.conf)], env=self.env,
                stdout=log, stderr=subprocess.STDOUT,
            )  # fmt: skip
        self._wait_for(self.node_is_idle, "the node to be idle (sinfo)", timeout_s)

    def node_is_idle(self) -> bool:
        for name, process in self.processes.items():
            if process.poll() is not None:
                raise RuntimeError(f"{name} exited with {process.returncode}:\n{self.logs()}")
        result = subprocess.run(
            [daemon_path("sinfo"), "-h", "-N", "-o", "%T"], env=self.env,
            capture_output=True, text=True,
        )  # fmt: skip
        return result.returncode == 0 and result.stdout.strip() == "idle"

    def _wait_for(self, condition, what: str, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if condition():
                return
            time.sleep(0.5)
        raise RuntimeError(f"timed out after {timeout_s} s waiting for {what}:\n{self.logs()}")

    def logs(self) -> str:
        parts = []
        for name in ("slurmctld.log", "slurmd.log", "slurmctld.stdout", "slurmd.stdout"):
            path = self.root / name
            if path.exists():
                parts.append(f"--- {name}\n{path.read_text()[-2000:]}")
        return "\n".join(parts)

    def stop(self) -> None:
        """Stop the daemons this cluster started (slurmd, slurmctld, munged), by pid."""
        for name in ("slurmd", "slurmctld", "munged"):
            process = self.processes.pop(name, None)
            if process is None or process.poll() is not None:
                continue
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if self.saved_conf.exists():
            shutil.move(self.saved_conf, self.conf)
        else:
            self.conf.unlink(missing_ok=True)
