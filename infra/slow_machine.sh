#!/usr/bin/env bash
# Run a command on an emulated slower machine: the cgroup `cpu` controller caps the command and everything it
# starts (verl, Ray, vLLM) at SLOW_CPUS cores in all. On the 2-core machine SLOW_CPUS=0.4 (the default) is about
# 5x slower for work that uses both cores.
#
#   bash infra/slow_machine.sh make demo                 # or: make slow CMD="make demo"
#   SLOW_CPUS=0.8 bash infra/slow_machine.sh .venv/bin/python -m pytest tests/integration/test_minirl_run.py
#
# cgroup v1 (cpu.cfs_quota_us) and v2 (cpu.max) are both handled; it needs root (or a delegated cgroup) and
# prints what it set. The cgroup is removed when the command ends; the command's exit status is returned.
set -euo pipefail
[[ $# -gt 0 ]] || { echo "usage: SLOW_CPUS=0.4 $0 COMMAND [ARGS...]" >&2; exit 2; }
cpus="${SLOW_CPUS:-0.4}"
period=100000
quota=$(awk -v c="$cpus" 'BEGIN { q = int(c * 100000); if (q < 1000) exit 1; print q }') \
  || { echo "SLOW_CPUS must be a number of cores >= 0.01, got '$cpus'" >&2; exit 2; }
name="stable-verl-slow-$$"

if [[ -f /sys/fs/cgroup/cgroup.controllers ]]; then  # cgroup v2 (unified)
  parent=/sys/fs/cgroup
  grep -qw cpu "$parent/cgroup.subtree_control" || echo +cpu > "$parent/cgroup.subtree_control"
  group="$parent/$name"
  mkdir "$group"
  echo "$quota $period" > "$group/cpu.max"
elif [[ -d /sys/fs/cgroup/cpu ]]; then                # cgroup v1: the cpu controller's own hierarchy
  group="/sys/fs/cgroup/cpu/$name"
  mkdir "$group"
  echo "$period" > "$group/cpu.cfs_period_us"
  echo "$quota" > "$group/cpu.cfs_quota_us"
else
  echo "no cgroup cpu controller found under /sys/fs/cgroup" >&2; exit 2
fi

cleanup() {  # move this shell back to the root group, then remove the (empty) group
  echo $$ > "$(dirname "$group")/cgroup.procs" 2>/dev/null || true
  rmdir "$group" 2>/dev/null || echo "note: $group still has processes; remove it when they end" >&2
}
trap cleanup EXIT
echo "slow machine: $cpus core(s) in all ($quota us per $period us, cgroup $group) for: $*" >&2
start=$SECONDS
# The command runs in a child shell placed in the group first, so it and all its descendants are capped.
set +e
bash -c 'echo $$ > "$1/cgroup.procs" && shift && exec "$@"' _ "$group" "$@"
status=$?
set -e
echo "slow machine: '$*' exited $status after $((SECONDS - start)) s" >&2
exit $status
