"""The workflow through the Snakemake Slurm executor on a single-node Slurm cluster started
here (slurm-wlm + munge from apt, as root). Daemons are stopped by PID afterwards."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from medverify import results

REPO = Path(__file__).resolve().parents[1]
DATA_DIR = Path(
    os.environ.get("MEDVERIFY_DATA_DIR", REPO / ".." / "shared" / "data" / "medmnist")
).resolve()

pytestmark = [pytest.mark.slurm]

#: The test starts daemons as root and may apt-install slurm-wlm and munge: it runs in CI
#: (CI=true, where it must not be skipped) or when asked (MEDVERIFY_SLURM_TEST=1, which
#: `make test-slurm` sets); elsewhere it is skipped with this reason.
ASKED = os.environ.get("CI", "").lower() == "true" or os.environ.get("MEDVERIFY_SLURM_TEST") == "1"
SKIP_REASON = (
    "starts a single-node Slurm as root (and may apt-install slurm-wlm, munge): "
    "runs where CI=true or with `make test-slurm`"
)

SLURM_CONF = """\
ClusterName=medverify
SlurmctldHost={host}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation={d}/state
SlurmdSpoolDir={d}/spool
SlurmctldPidFile={d}/slurmctld.pid
SlurmdPidFile={d}/slurmd.pid
SlurmctldLogFile={d}/slurmctld.log
SlurmdLogFile={d}/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
MpiDefault=none
ReturnToService=2
NodeName={host} CPUs={cpus} RealMemory={mem} State=UNKNOWN
PartitionName=debug Nodes={host} Default=YES MaxTime=INFINITE State=UP
"""


def ensure_installed() -> None:
    if not ASKED:
        pytest.skip(SKIP_REASON)
    if os.geteuid() != 0:
        pytest.fail("the Slurm test starts slurmctld/slurmd/munged and needs root")
    if all(shutil.which(b) for b in ("slurmctld", "slurmd", "munged", "sbatch", "squeue")):
        return
    if not shutil.which("apt-get"):
        pytest.fail("slurm-wlm and munge are not installed and apt-get is unavailable")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env, timeout=600)
    subprocess.run(
        ["apt-get", "install", "-y", "-qq", "slurm-wlm", "munge"],
        check=True,
        env=env,
        timeout=900,
    )


def real_memory_mb() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return min(20000, int(line.split()[1]) // 1024 - 1000)
    return 4000


def wait_for(cmd, env, timeout=60.0, ok=lambda out: True) -> str:
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
        last = proc.stdout + proc.stderr
        if proc.returncode == 0 and ok(proc.stdout):
            return proc.stdout
        time.sleep(1)
    raise AssertionError(f"{' '.join(cmd)} not ready after {timeout:.0f} s: {last.strip()}")


def test_workflow_on_single_node_slurm(tmp_path):
    ensure_installed()
    host = socket.gethostname()
    d = tmp_path / "slurm"
    for sub in ("state", "spool"):
        (d / sub).mkdir(parents=True)
    conf = d / "slurm.conf"
    conf.write_text(
        SLURM_CONF.format(host=host, d=d, cpus=os.cpu_count() or 2, mem=real_memory_mb())
    )
    # srun inside a job step looks for the default config (SLURM_CONF does not reach it):
    # install ours there for the test and restore whatever was there afterwards.
    system_conf = Path("/etc/slurm/slurm.conf")
    previous = system_conf.read_bytes() if system_conf.exists() else None
    system_conf.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(conf, system_conf)
    env = {**os.environ, "SLURM_CONF": str(system_conf)}
    Path("/run/munge").mkdir(parents=True, exist_ok=True)
    daemons = []
    try:
        daemons.append(
            subprocess.Popen(
                ["munged", "--foreground", "--force"],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.STDOUT,
            )
        )
        time.sleep(1)
        for daemon in ("slurmctld", "slurmd"):
            daemons.append(
                subprocess.Popen(
                    [daemon, "-D", "-f", str(system_conf)],
                    env=env,
                    stdout=open(d / f"{daemon}.out", "w"),  # noqa: SIM115
                    stderr=subprocess.STDOUT,
                )
            )
        wait_for(["sinfo", "-h", "-o", "%t"], env, ok=lambda out: "idle" in out)

        cfg = yaml.safe_load((REPO / "tests" / "config" / "ci.yaml").read_text())
        cfg.update(
            data_dir=str(DATA_DIR),
            instances=3,
            families={"brightness": [4, 8]},
            verifiers=["exact"],
            strategies=["joint"],
            epochs=1,
        )
        cfg["dataset_settings"]["pneumoniamnist"]["epochs"] = 1
        config = tmp_path / "slurm.yaml"
        config.write_text(yaml.safe_dump(cfg))
        work = tmp_path / "work"
        work.mkdir()
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "snakemake",
                "-s",
                str(REPO / "Snakefile"),
                "-d",
                str(work),
                "--workflow-profile",
                str(REPO / "profiles" / "slurm"),
                "--configfile",
                str(config),
                "--jobs",
                "2",
            ],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=900,
        )
        assert proc.returncode == 0, (proc.stdout + proc.stderr)[-5000:]
        assert "slurm" in (proc.stdout + proc.stderr).lower()
        records = sorted((work / "results").rglob("verify/brightness/*/exact/joint/*.json"))
        assert len(records) == 6
        for path in records:
            rec = results.read(path)
            assert rec.status in results.DECIDED, rec.message
        # job grouping (profiles/slurm: groups, group-components): the six verify jobs
        # travel in one Slurm job, not six, and the two search jobs in one more
        log = proc.stdout + proc.stderr
        submitted = [line for line in log.splitlines() if "submitted with SLURM jobid" in line]
        for name in ("verify", "search"):
            grouped = [line for line in submitted if f"group_{name}" in line]
            assert len(grouped) == 1, "\n".join(submitted)
            assert not [line for line in submitted if f"rule_{name}/" in line], "\n".join(submitted)
        assert (work / "results" / "tables" / "outcomes.csv").exists()
    finally:
        if previous is None:
            system_conf.unlink(missing_ok=True)
        else:
            system_conf.write_bytes(previous)
        for proc in reversed(daemons):
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
