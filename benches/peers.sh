#!/usr/bin/env bash
# The word count against Timely Dataflow, interleaved in one run.
#
#   benches/peers.sh PEERS_DIR            # PEERS_DIR holds timely-wordcount/ (the peers' folder)
#   N=2000000 REPS=5 benches/peers.sh PEERS_DIR
#
# Copies the Timely peer to a scratch folder and builds it there (release), builds our
# word-count bench, then runs, REPS times in turn: Timely as two processes over loopback
# TCP, and our bench's 2-worker configurations (acking off and on). Prints each run's
# words/s, then medians and our ratio to Timely. Both generate the same sentences inside
# the timed region and check the same totals.
set -euo pipefail
peers=${1:?usage: benches/peers.sh PEERS_DIR}
N=${N:-2000000}
REPS=${REPS:-3}
repo=$(cd "$(dirname "$0")/.." && pwd)
scratch=$(mktemp -d -t topo-peers-XXXXXX)
trap 'rm -rf "$scratch"' EXIT

cp -r "$peers/timely-wordcount" "$scratch/"
(cd "$scratch/timely-wordcount" && cargo build --release --quiet)
timely=$scratch/timely-wordcount/target/release/timely-wordcount

cd "$repo"
bench=$(cargo bench --bench wordcount --no-run --message-format=json 2>/dev/null |
  python3 -c 'import json,sys
for l in sys.stdin:
    m = json.loads(l)
    if m.get("reason") == "compiler-artifact" and m["target"]["name"] == "wordcount" and m.get("executable"):
        print(m["executable"])')

port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

results=$scratch/results.tsv
for rep in $(seq 1 "$REPS"); do
  hosts=$scratch/hosts.txt
  printf '127.0.0.1:%s\n127.0.0.1:%s\n' "$(port)" "$(port)" >"$hosts"
  "$timely" "$N" -n 2 -p 1 -h "$hosts" >"$scratch/p1.out" 2>&1 &
  p1=$!
  rate=$("$timely" "$N" -n 2 -p 0 -h "$hosts" | sed -n 's/.*words_per_s=\([0-9]*\).*/\1/p' | head -1)
  wait "$p1"
  echo "timely-2proc $rate" | tee -a "$results"
  TOPO_BENCH_SENTENCES=$N TOPO_BENCH_REPS=1 TOPO_BENCH_ONLY=w2-off,w2-on TOPO_BENCH_LATENCY_SECS=0 \
    "$bench" --bench 2>/dev/null |
    sed -n 's/^BENCH wordcount workers=2 acking=\([a-z]*\) words_per_sec=\([0-9]*\).*/topo-2w-acking-\1 \2/p' |
    tee -a "$results"
done

python3 - "$results" <<'EOF'
import statistics, sys
rates = {}
for line in open(sys.argv[1]):
    name, rate = line.split()
    rates.setdefault(name, []).append(float(rate))
timely = statistics.median(rates["timely-2proc"])
print(f"{'configuration':<22} {'median words/s':>15} {'vs Timely':>10}")
for name, v in sorted(rates.items()):
    m = statistics.median(v)
    print(f"{name:<22} {m:>15,.0f} {m / timely:>9.2f}x")
EOF
