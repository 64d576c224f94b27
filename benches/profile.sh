#!/usr/bin/env bash
# A flame graph of the whole machine (zoocore, loadgen, kernel) while one
# loadgen cell runs against a fresh zoocore: the profiles behind the notes on
# what bounds a benchmark row. Needs perf (Debian: linux-perf) and inferno
# (cargo install inferno). It samples cpu-clock, which works in guests
# without hardware counters.
#
#   benches/profile.sh NAME [loadgen workload args...]
#   benches/profile.sh reads-32 --read-pct 100 --sessions 32
#
# Writes benches/profiles/NAME.svg and prints the hottest symbols.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
[ $# -ge 1 ] || { sed -n 2,12p "$0"; exit 2; }
name=$1
shift
command -v perf >/dev/null || { echo "perf is missing (apt-get install linux-perf)" >&2; exit 2; }
command -v inferno-flamegraph >/dev/null || { echo "inferno is missing (cargo install inferno)" >&2; exit 2; }
cargo build --release --locked -p zoocore -p zoocore-loadgen
dir=$(mktemp -d)
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
cat > "$dir/zoo.cfg" <<CFG
tickTime=2000
dataDir=$dir/data
clientPort=$port
clientPortAddress=127.0.0.1
admin.enableServer=false
CFG
target/release/zoocore --config "$dir/zoo.cfg" > "$dir/server.log" 2>&1 &
server=$!
trap 'kill $server 2>/dev/null; wait $server 2>/dev/null; rm -rf "$dir"' EXIT
until (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; do sleep 0.1; done
target/release/loadgen --target "zoocore=127.0.0.1:$port" --seconds 8 --warmup 2 --quiet "$@" &
load=$!
sleep 4
perf record -a -g -e cpu-clock -o "$dir/perf.data" -- sleep 4 2> /dev/null
wait $load
mkdir -p benches/profiles
perf script -i "$dir/perf.data" 2> /dev/null | inferno-collapse-perf | inferno-flamegraph --title "zoocore: $name ($*)" > "benches/profiles/$name.svg"
perf report -i "$dir/perf.data" --no-children --sort comm,sym --stdio -g none 2> /dev/null | grep -E '%' | head -20
echo "benches/profiles/$name.svg"
