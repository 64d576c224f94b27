#!/usr/bin/env bash
# Runs loadgen against zoocore over a grid of settings (core layout, group
# commit size, linger, spin before park) on this host and recommends the
# setting with the most throughput whose p99 stays within 1.5x the best p99.
#
#   tuning/sweep.sh [--seconds N] [--read-pct P] [--sessions S] [--depth D] [--quick]
#
# Uses target/release/{zoocore,loadgen} (ZOOCORE_BIN / LOADGEN_BIN override;
# `cargo build --release` first). Each setting gets a fresh data dir under
# target/sweep/ on the same disk, a free loopback port, and is stopped with
# SIGTERM after its run. --quick tries two settings only (a smoke test).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

seconds=5 read_pct=90 sessions=32 depth=4 quick=0
while (($#)); do
    case "$1" in
        --seconds) seconds=$2; shift 2 ;;
        --read-pct) read_pct=$2; shift 2 ;;
        --sessions) sessions=$2; shift 2 ;;
        --depth) depth=$2; shift 2 ;;
        --quick) quick=1; shift ;;
        -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
        *) echo "sweep.sh: unknown argument $1" >&2; exit 2 ;;
    esac
done

zoocore=${ZOOCORE_BIN:-target/release/zoocore}
loadgen=${LOADGEN_BIN:-target/release/loadgen}
for b in "$zoocore" "$loadgen"; do
    [[ -x $b ]] || { echo "sweep.sh: $b missing; run cargo build --release" >&2; exit 2; }
done

cpus=$(nproc)
layouts=("zoocore.shards=$(( cpus > 1 ? cpus - 1 : 1 ))")
((cpus > 1)) && layouts+=("zoocore.shards=$cpus")
batches=(1024 128)
lingers=(0 200)
spins=(0 50)
if ((quick)); then
    layouts=("${layouts[0]}") batches=(1024) lingers=(0 200) spins=(0)
fi

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

root=target/sweep
rm -rf "$root"
mkdir -p "$root"
results=()
n=0
for layout in "${layouts[@]}"; do
 for batch in "${batches[@]}"; do
  for linger in "${lingers[@]}"; do
   for spin in "${spins[@]}"; do
    n=$((n + 1))
    dir="$root/$n"
    mkdir -p "$dir/data"
    port=$(free_port)
    setting="$layout zoocore.maxBatchTxns=$batch zoocore.commitLingerMicros=$linger zoocore.spinBeforeParkMicros=$spin"
    {
        printf 'tickTime=2000\ndataDir=%s\nclientPort=%s\nclientPortAddress=127.0.0.1\n' "$PWD/$dir/data" "$port"
        printf 'maxClientCnxns=0\nadmin.enableServer=false\n4lw.commands.whitelist=ruok\n'
        tr ' ' '\n' <<<"$setting"
    } > "$dir/zoo.cfg"
    "$zoocore" --config "$dir/zoo.cfg" > "$dir/server.log" 2>&1 &
    pid=$!
    for _ in $(seq 100); do
        [[ $(exec 3<>"/dev/tcp/127.0.0.1/$port" && printf ruok >&3 && cat <&3) == imok ]] 2>/dev/null && break
        sleep 0.1
    done
    echo "sweep: [$n] $setting" >&2
    "$loadgen" --target "zoocore=127.0.0.1:$port" --read-pct "$read_pct" --sessions "$sessions" \
        --depth "$depth" --seconds "$seconds" --warmup 1 --quiet --json "$dir/result.json" > /dev/null
    kill -TERM "$pid"
    wait "$pid" || true
    results+=("$dir/result.json|$setting")
   done
  done
 done
done

python3 - "${results[@]}" <<'PY'
import json, sys
rows = []
for arg in sys.argv[1:]:
    path, setting = arg.split("|", 1)
    r = json.load(open(path))["results"][0]
    p99 = max(c["p99_us"] for c in r["classes"])
    rows.append((r["ops_per_sec"], p99, (r.get("server") or {}).get("cpu_us_per_op"), setting))
best_p99 = min(r[1] for r in rows)
print(f"{'ops/s':>10} {'p99 us':>9} {'CPU us/op':>10}  setting")
for ops, p99, cpu, setting in sorted(rows, reverse=True):
    print(f"{ops:>10.0f} {p99:>9.0f} {cpu if cpu is not None else float('nan'):>10.1f}  {setting}")
eligible = [r for r in rows if r[1] <= 1.5 * best_p99]
ops, p99, cpu, setting = max(eligible)
print(f"recommended: {setting}  ({ops:.0f} ops/s, p99 {p99:.0f} us; the most throughput with p99 within 1.5x of the best)")
PY
