#!/usr/bin/env bash
# Two "hosts" on one machine for multi-machine tests and benchmarks: network namespaces
# finch-host0 (10.77.0.1) and finch-host1 (10.77.0.2) joined by a veth pair, each with its
# own address and loopback. Needs root (or CAP_NET_ADMIN) and iproute2.
#
#   scripts/two_hosts.sh up      create them (idempotent)
#   scripts/two_hosts.sh down    remove them
#   scripts/two_hosts.sh run N CMD...   run CMD in host N (0 or 1), with GLOO_SOCKET_IFNAME set
#                                       to that host's interface
#
# A two-rank training across them (every rank reads the same run folder and data path):
#   scripts/two_hosts.sh up
#   E="WORLD_SIZE=2 LOCAL_WORLD_SIZE=1 LOCAL_RANK=0 MASTER_ADDR=10.77.0.1 MASTER_PORT=29600"
#   env $E RANK=1 scripts/two_hosts.sh run 1 build/finch train --config R --out RUN &
#   env $E RANK=0 scripts/two_hosts.sh run 0 build/finch train --config R --out RUN
set -euo pipefail

addr() { echo "10.77.0.$(($1 + 1))"; }

up() {
  for n in 0 1; do
    ip netns list | grep -qw "finch-host$n" || ip netns add "finch-host$n"
  done
  if ! ip netns exec finch-host0 ip link show finch-veth0 >/dev/null 2>&1; then
    ip link add finch-veth0 type veth peer name finch-veth1
    for n in 0 1; do
      ip link set "finch-veth$n" netns "finch-host$n"
      ip netns exec "finch-host$n" ip addr add "$(addr $n)/24" dev "finch-veth$n"
      ip netns exec "finch-host$n" ip link set "finch-veth$n" up
      ip netns exec "finch-host$n" ip link set lo up
    done
  fi
}

down() {
  for n in 0 1; do ip netns del "finch-host$n" 2>/dev/null || true; done
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  run)
    n=$2
    shift 2
    exec ip netns exec "finch-host$n" env GLOO_SOCKET_IFNAME="finch-veth$n" "$@"
    ;;
  *)
    echo "usage: $0 up|down|run N CMD..." >&2
    exit 2
    ;;
esac
