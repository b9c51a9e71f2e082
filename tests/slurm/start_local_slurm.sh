#!/usr/bin/env bash
# Start a single-node Slurm cluster on this machine (controller and the one compute node are
# this host), for tests/test_slurm_executor.py and `.ci/run`. Idempotent: a cluster already
# answering is left as it is. Needs root (it writes /etc/slurm/slurm.conf and starts daemons).
#
#   tests/slurm/start_local_slurm.sh            # install if missing (apt-get), configure, start
#   LTH_SLURM_NO_INSTALL=1 tests/slurm/...      # never install: exit 3 when the packages are missing
#
# Exit 0: `sinfo` shows the partition `lth` up with this host idle or mixed. Exit 3: Slurm or
# munge cannot be installed here (the test then skips, naming this reason). Logs of the
# daemons: /var/log/slurm/.
set -u
PARTITION=${LTH_SLURM_PARTITION:-lth}
HOST=$(hostname -s)

ready() {
  scontrol ping 2>/dev/null | grep -q UP && sinfo -h -p "$PARTITION" -o '%T' 2>/dev/null | grep -qE 'idle|mixed|alloc'
}
# Not root: a cluster that answers is used as it is (nothing here may be changed without root).
if [ "$(id -u)" != 0 ] && ready; then exit 0; fi

if ! command -v slurmctld >/dev/null || ! command -v munged >/dev/null; then
  if [ -n "${LTH_SLURM_NO_INSTALL:-}" ] || [ "$(id -u)" != 0 ]; then
    echo "slurm-wlm/munge are not installed and cannot be installed here" >&2; exit 3
  fi
  (apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y slurm-wlm munge) >/tmp/lth-slurm-install.log 2>&1 \
    || { echo "apt-get install slurm-wlm munge failed (see /tmp/lth-slurm-install.log)" >&2; exit 3; }
fi
[ "$(id -u)" = 0 ] || { echo "starting Slurm needs root" >&2; exit 3; }

# munge: a key (Debian's package makes one; make it if missing) and the daemon.
mkdir -p /etc/munge /var/lib/munge /var/log/munge /run/munge
if [ ! -s /etc/munge/munge.key ]; then
  dd if=/dev/urandom of=/etc/munge/munge.key bs=1 count=1024 status=none
fi
chown -R munge:munge /etc/munge /var/lib/munge /var/log/munge /run/munge 2>/dev/null || true
chmod 0700 /etc/munge; chmod 0400 /etc/munge/munge.key
if ! munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
  if id munge >/dev/null 2>&1; then runuser -u munge -- /usr/sbin/munged --force; else /usr/sbin/munged --force; fi
  sleep 1
fi

# slurm.conf: this host as controller and as the one node, with its real CPUs and memory.
NODE=$(slurmd -C | head -1 | sed "s/^NodeName=[^ ]*/NodeName=$HOST/")
mkdir -p /etc/slurm /var/spool/slurmctld /var/spool/slurmd /var/log/slurm
cat > /tmp/lth-slurm.conf.$$ <<CONF
# written by lth tests/slurm/start_local_slurm.sh: a single-node cluster for tests
ClusterName=lth-local
SlurmctldHost=$HOST
SlurmUser=root
AuthType=auth/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
ReturnToService=2
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
JobRequeue=1
MinJobAge=3600
# seconds between SIGTERM and SIGKILL when a job is requeued or cancelled (Slurm's default: 30):
# short, so that the requeue test's job is really stopped mid-run
KillWait=2
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmdSpoolDir=/var/spool/slurmd
StateSaveLocation=/var/spool/slurmctld
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
$NODE State=UNKNOWN
PartitionName=$PARTITION Nodes=$HOST Default=YES MaxTime=INFINITE State=UP
CONF
if cmp -s /tmp/lth-slurm.conf.$$ /etc/slurm/slurm.conf && ready; then rm -f /tmp/lth-slurm.conf.$$; exit 0; fi
mv /tmp/lth-slurm.conf.$$ /etc/slurm/slurm.conf
if ready; then scontrol reconfigure; fi   # running with an older config: take this one

pgrep -x slurmctld >/dev/null || /usr/sbin/slurmctld
pgrep -x slurmd >/dev/null || /usr/sbin/slurmd
for _ in $(seq 1 30); do
  if ready; then exit 0; fi
  scontrol update NodeName="$HOST" State=RESUME >/dev/null 2>&1 || true
  sleep 1
done
echo "Slurm did not come up (see /var/log/slurm/slurmctld.log and slurmd.log)" >&2
exit 1
