#!/usr/bin/env bash
# A throwaway single-node Ceph cluster for the object-store tests and benchmarks: one monitor,
# one manager, one OSD (BlueStore on a sparse file in DIR), radosgw (beast on 127.0.0.1) and an
# S3 user. Debian's packages (ceph-mon ceph-mgr ceph-osd radosgw ceph-common), no systemd.
#
#   Tools/ceph.sh start       [--dir DIR]   start (idempotent: a running cluster is reused)
#   Tools/ceph.sh stop        [--dir DIR]   stop its own daemons (pid files) and remove DIR
#   Tools/ceph.sh env         [--dir DIR]   print the env file's path (fails when not running)
#   Tools/ceph.sh restart-rgw [--dir DIR]   kill radosgw (if running) and start it again
#
# DIR defaults to /tmp/replicafs-ceph. The env file DIR/env holds AWS_ENDPOINT_URL,
# AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION (and REPLICAFS_CEPH_DIR,
# REPLICAFS_RGW_PIDFILE); tests read it through REPLICAFS_S3_ENV. Ports are picked free at
# start, so several clusters (one per DIR) can run side by side.
set -euo pipefail

cmd="${1:-}"; shift || true
dir=/tmp/replicafs-ceph
while [ $# -gt 0 ]; do
  case "$1" in
    --dir) dir="${2:?--dir needs a directory}"; shift 2 ;;
    --dir=*) dir="${1#--dir=}"; shift ;;
    *) echo "ceph.sh: unknown argument '$1'" >&2; exit 2 ;;
  esac
done
case "$dir" in /*) ;; *) dir="$(pwd)/$dir" ;; esac
conf="$dir/ceph.conf"
daemons=(rgw osd mgr mon)   # stop order

die() {
  echo "ceph.sh: $*" >&2
  [ -d "$dir/log" ] && echo "ceph.sh: logs are in $dir/log" >&2
  exit 1
}

pidfile() { echo "$dir/run/$1.pid"; }

alive() {   # alive NAME: its pid file names a running process
  local f; f="$(pidfile "$1")"
  [ -s "$f" ] && kill -0 "$(cat "$f")" 2>/dev/null
}

kill_daemon() {   # kill_daemon NAME SIGNAL: ends the process in NAME's pid file and waits for it
  local f pid i; f="$(pidfile "$1")"
  [ -s "$f" ] || return 0
  pid="$(cat "$f")"
  if kill -0 "$pid" 2>/dev/null; then
    kill "-${2:-TERM}" "$pid" 2>/dev/null || true
    for i in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null || true
    for i in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  fi
  rm -f "$f"
}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

ceph_() { timeout 60 ceph -c "$conf" "$@"; }

rgw_up() {   # rgw_up: the endpoint answers HTTP
  local port; port="$(cat "$dir/rgw-port")"
  python3 - "$port" <<'EOF' 2>/dev/null
import sys, urllib.request, urllib.error
try:
    urllib.request.urlopen("http://127.0.0.1:%s/" % sys.argv[1], timeout=2)
except urllib.error.HTTPError:
    pass
EOF
}

start_rgw() {
  radosgw -c "$conf" -n client.rgw.a --keyring "$dir/rgw/keyring" \
    2>>"$dir/log/daemons.err" || die "radosgw did not start"
  local i
  for i in $(seq 1 300); do
    if rgw_up; then return 0; fi
    sleep 0.2
  done
  die "radosgw does not answer on 127.0.0.1:$(cat "$dir/rgw-port") after 60 s"
}

print_env() {
  echo "ceph: endpoint $(grep AWS_ENDPOINT_URL "$dir/env" | cut -d= -f2-)"
  echo "ceph: access key $(grep AWS_ACCESS_KEY_ID "$dir/env" | cut -d= -f2-)"
  echo "ceph: secret key $(grep AWS_SECRET_ACCESS_KEY "$dir/env" | cut -d= -f2-)"
  echo "ceph: env file $dir/env (logs in $dir/log)"
}

do_stop() {
  local d
  for d in "${daemons[@]}"; do
    case "$d" in
      rgw) kill_daemon client.rgw.a TERM ;;
      osd) kill_daemon osd.0 TERM ;;
      mgr) kill_daemon mgr.x TERM ;;
      mon) kill_daemon mon.a TERM ;;
    esac
  done
  # Only remove a directory this script made (its marker), never an arbitrary --dir.
  if [ -f "$dir/.replicafs-ceph" ]; then rm -rf "$dir"; fi
}

do_start() {
  if [ -f "$dir/env" ] && alive mon.a && alive osd.0 && alive client.rgw.a && rgw_up; then
    print_env; return 0
  fi
  [ -e "$dir" ] && [ ! -f "$dir/.replicafs-ceph" ] && [ -n "$(ls -A "$dir" 2>/dev/null)" ] \
    && die "$dir exists and was not made by ceph.sh: choose another --dir"
  do_stop   # a half-started cluster in DIR: begin again
  for c in ceph-mon ceph-mgr ceph-osd radosgw radosgw-admin ceph ceph-authtool monmaptool uuidgen; do
    command -v "$c" >/dev/null || die "$c not found: apt-get install ceph-mon ceph-mgr ceph-osd radosgw ceph-common (Tools/setup.sh)"
  done
  local t0=$SECONDS
  mkdir -p "$dir"/{run,log,mon/a,mgr/x,osd/0,rgw}
  touch "$dir/.replicafs-ceph"
  local fsid mon_port rgw_port osd_uuid
  fsid="$(uuidgen)"; mon_port="$(free_port)"; rgw_port="$(free_port)"; osd_uuid="$(uuidgen)"
  echo "$rgw_port" > "$dir/rgw-port"
  cat > "$conf" <<EOF
[global]
fsid = $fsid
mon host = v2:127.0.0.1:$mon_port
mon initial members = a
public network = 127.0.0.0/8
ms bind ipv4 = true
ms bind ipv6 = false
ms bind msgr1 = false
auth cluster required = cephx
auth service required = cephx
auth client required = cephx
keyring = $dir/keyring
run dir = $dir/run
admin socket = $dir/run/\$name.asok
pid file = $dir/run/\$name.pid
log file = $dir/log/\$name.log
crash dir = $dir/crash
log to stderr = false
err to stderr = true
osd pool default size = 1
osd pool default min size = 1
osd pool default pg num = 8
osd pool default pgp num = 8
osd pool default pg autoscale mode = off
osd crush chooseleaf type = 0
mon allow pool size one = true
mon allow pool delete = true
mon warn on pool no redundancy = false
mon max pg per osd = 1000
[mon]
mon data = $dir/mon/\$id
mon cluster log file = $dir/log/cluster.log
[mgr]
mgr data = $dir/mgr/\$id
keyring = $dir/mgr/\$id/keyring
mgr initial modules =
[osd]
osd data = $dir/osd/\$id
keyring = $dir/osd/\$id/keyring
osd objectstore = bluestore
bluestore block create = true
bluestore block size = 21474836480
bluestore fsck on mkfs = false
bluestore fsck on mount = false
bluestore cache autotune = false
bluestore cache size = 268435456
osd memory target = 1073741824
osd max object size = 134217728
[client.rgw.a]
keyring = $dir/rgw/keyring
rgw frontends = beast endpoint=127.0.0.1:$rgw_port
rgw data = $dir/rgw
rgw dns name = 127.0.0.1
rgw enable usage log = false
rgw thread pool size = 64
EOF
  # Monitor with its keys (cephx as usual: the admin key in DIR/keyring).
  ceph-authtool --create-keyring "$dir/mon.keyring" --gen-key -n mon. --cap mon 'allow *' >/dev/null
  ceph-authtool --create-keyring "$dir/keyring" --gen-key -n client.admin \
    --cap mon 'allow *' --cap osd 'allow *' --cap mgr 'allow *' --cap mds 'allow *' >/dev/null
  ceph-authtool "$dir/mon.keyring" --import-keyring "$dir/keyring" >/dev/null
  monmaptool --create --addv a "[v2:127.0.0.1:$mon_port]" --fsid "$fsid" "$dir/monmap" >/dev/null
  ceph-mon -c "$conf" --mkfs -i a --monmap "$dir/monmap" --keyring "$dir/mon.keyring" \
    >"$dir/log/mkfs-mon.log" 2>&1 || die "ceph-mon --mkfs failed (see $dir/log/mkfs-mon.log)"
  ceph-mon -c "$conf" -i a 2>>"$dir/log/daemons.err" || die "ceph-mon did not start"
  ceph_ -s >/dev/null 2>&1 || die "the monitor does not answer"
  # Manager.
  ceph_ auth get-or-create mgr.x mon 'allow profile mgr' osd 'allow *' mds 'allow *' \
    > "$dir/mgr/x/keyring" || die "no key for mgr.x"
  ceph-mgr -c "$conf" -i x 2>>"$dir/log/daemons.err" || die "ceph-mgr did not start"
  # One OSD on a sparse file.
  local id
  id="$(ceph_ osd new "$osd_uuid")" || die "ceph osd new failed"
  [ "$id" = 0 ] || die "expected osd.0, got osd.$id"
  ceph_ auth get-or-create osd.0 osd 'allow *' mon 'allow profile osd' mgr 'allow profile osd' \
    > "$dir/osd/0/keyring" || die "no key for osd.0"
  ceph-osd -c "$conf" -i 0 --mkfs --osd-uuid "$osd_uuid" \
    >"$dir/log/mkfs-osd.log" 2>&1 || die "ceph-osd --mkfs failed (see $dir/log/mkfs-osd.log)"
  ceph-osd -c "$conf" -i 0 2>>"$dir/log/daemons.err" || die "ceph-osd did not start"
  local i up=""
  for i in $(seq 1 300); do
    if ceph_ osd dump 2>/dev/null | grep -q '^osd.0 up'; then up=1; break; fi
    sleep 0.2
  done
  [ -n "$up" ] || die "osd.0 is not up after 60 s"
  # radosgw and its S3 user.
  ceph_ auth get-or-create client.rgw.a mon 'allow rw' osd 'allow rwx' mgr 'allow rw' \
    > "$dir/rgw/keyring" || die "no key for client.rgw.a"
  start_rgw
  local access secret
  access="$(python3 -c 'import secrets,string; print("".join(secrets.choice(string.ascii_uppercase+string.digits) for _ in range(20)))')"
  secret="$(python3 -c 'import secrets; print(secrets.token_urlsafe(30)[:40])')"
  timeout 60 radosgw-admin -c "$conf" user create --uid=replicafs --display-name="ReplicaFS tests" \
    --access-key="$access" --secret-key="$secret" >"$dir/log/user-create.log" 2>&1 \
    || die "radosgw-admin user create failed (see $dir/log/user-create.log)"
  cat > "$dir/env.tmp" <<EOF
AWS_ENDPOINT_URL=http://127.0.0.1:$rgw_port
AWS_ACCESS_KEY_ID=$access
AWS_SECRET_ACCESS_KEY=$secret
AWS_REGION=us-east-1
REPLICAFS_CEPH_DIR=$dir
REPLICAFS_RGW_PIDFILE=$(pidfile client.rgw.a)
EOF
  mv "$dir/env.tmp" "$dir/env"
  echo "ceph: started in $((SECONDS - t0)) s"
  print_env
}

case "$cmd" in
  start) do_start ;;
  stop) do_stop ;;
  env)
    [ -f "$dir/env" ] && alive client.rgw.a || die "no cluster running in $dir (Tools/ceph.sh start --dir $dir)"
    echo "$dir/env" ;;
  restart-rgw)
    [ -f "$dir/env" ] && alive mon.a && alive osd.0 || die "no cluster running in $dir"
    kill_daemon client.rgw.a TERM
    start_rgw
    echo "ceph: radosgw restarted on $(grep AWS_ENDPOINT_URL "$dir/env" | cut -d= -f2-)" ;;
  *) echo "usage: Tools/ceph.sh start|stop|env|restart-rgw [--dir DIR]" >&2; exit 2 ;;
esac
