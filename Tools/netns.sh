#!/bin/bash
# Two test hosts on one machine: network namespaces PREFIX-a and PREFIX-b joined by a veth
# pair (PREFIX-va in a: 10.77.0.1/24, PREFIX-vb in b: 10.77.0.2/24), loopback up in each.
# Both ends of the pair live inside the namespaces, so nothing is added to the host's network
# and two sets with different prefixes never see each other. Needs root and iproute2.
#
#   Tools/netns.sh up PREFIX              create (fails if PREFIX-a or PREFIX-b exists)
#   Tools/netns.sh down PREFIX            delete both namespaces (and with them the pair)
#   Tools/netns.sh netem PREFIX ARGS...   netem qdisc on both ends: "delay 5ms" is a 10 ms round
#                                         trip, "loss 1%", "rate 100mbit"; "clear" removes it
#   Tools/netns.sh rate PREFIX RATE|clear token-bucket limit (tbf) on both ends, e.g. 100mbit
#   Tools/netns.sh link PREFIX down|up    cut or restore the link (a's end; b sees no carrier)
#   Tools/netns.sh exec PREFIX a|b CMD... run CMD inside one of them
#
# PREFIX: letters, digits and '-', at most 12 characters (interface names hold 15).
# netem needs a kernel with CONFIG_NET_SCH_NETEM; without it 'netem' says so and fails
# (exit 3), so a caller can tell "cannot emulate here" from a failure.
set -euo pipefail

usage() { echo "usage: $0 up|down PREFIX | netem PREFIX ARGS...|clear | rate PREFIX RATE|clear | link PREFIX down|up | exec PREFIX a|b CMD..." >&2; exit 2; }
fail() { echo "netns.sh: $*" >&2; exit 1; }

[ $# -ge 2 ] || usage
cmd=$1 prefix=$2
shift 2
[[ $prefix =~ ^[A-Za-z0-9][A-Za-z0-9-]{0,11}$ ]] || fail "bad prefix '$prefix': letters, digits and '-', at most 12 characters"
a=$prefix-a b=$prefix-b va=$prefix-va vb=$prefix-vb
addr_a=10.77.0.1 addr_b=10.77.0.2

case $cmd in
up)
    for ns in "$a" "$b"; do
        ! ip netns list | grep -qw -- "$ns" || fail "namespace $ns exists: run '$0 down $prefix' first"
    done
    # Whatever fails half-way is undone, so a failed 'up' leaves nothing behind.
    trap 'ip netns del "$a" 2>/dev/null || true; ip netns del "$b" 2>/dev/null || true; ip link del "$va" 2>/dev/null || true' ERR
    ip netns add "$a"
    ip netns add "$b"
    ip link add "$va" type veth peer name "$vb"
    ip link set "$va" netns "$a"
    ip link set "$vb" netns "$b"
    ip -n "$a" addr add "$addr_a/24" dev "$va"
    ip -n "$b" addr add "$addr_b/24" dev "$vb"
    for ns in "$a" "$b"; do ip -n "$ns" link set lo up; done
    ip -n "$a" link set "$va" up
    ip -n "$b" link set "$vb" up
    trap - ERR
    echo "$a $addr_a <-> $b $addr_b"
    ;;
down)
    status=0
    for ns in "$a" "$b"; do
        if ip netns list | grep -qw -- "$ns"; then ip netns del "$ns" || status=1; fi
    done
    exit $status
    ;;
netem)
    [ $# -ge 1 ] || usage
    if [ "$1" = clear ]; then
        ip -n "$a" qdisc del dev "$va" root 2>/dev/null || true
        ip -n "$b" qdisc del dev "$vb" root 2>/dev/null || true
    else
        if ! out=$(ip netns exec "$a" tc qdisc replace dev "$va" root netem "$@" 2>&1); then
            if grep -q "qdisc kind is unknown" <<<"$out"; then
                echo "netns.sh: this kernel ($(uname -r)) has no netem qdisc (CONFIG_NET_SCH_NETEM): latency and loss cannot be emulated here" >&2
                exit 3
            fi
            fail "tc netem $*: $out"
        fi
        ip netns exec "$b" tc qdisc replace dev "$vb" root netem "$@"
    fi
    ;;
rate)
    [ $# -eq 1 ] || usage
    if [ "$1" = clear ]; then
        ip -n "$a" qdisc del dev "$va" root 2>/dev/null || true
        ip -n "$b" qdisc del dev "$vb" root 2>/dev/null || true
    else
        for end in "$a:$va" "$b:$vb"; do
            ip netns exec "${end%%:*}" tc qdisc replace dev "${end##*:}" root tbf rate "$1" burst 64kb latency 100ms
        done
    fi
    ;;
link)
    [ $# -eq 1 ] && { [ "$1" = down ] || [ "$1" = up ]; } || usage
    ip -n "$a" link set "$va" "$1"
    ;;
exec)
    [ $# -ge 2 ] && { [ "$1" = a ] || [ "$1" = b ]; } || usage
    ns=$prefix-$1
    shift
    exec ip netns exec "$ns" "$@"
    ;;
*)
    usage
    ;;
esac
