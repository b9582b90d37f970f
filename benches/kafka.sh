#!/usr/bin/env bash
# Kafka throughput through a local tansu broker, with the cold-chain pipeline.
#
#   benches/kafka.sh live RATE SECONDS   simulator -> Kafka -> floe, all at once:
#                                        does floe keep up with RATE records/s?
#   benches/kafka.sh drain RECORDS       RECORDS already on the topic, read from
#                                        the earliest: how fast floe consumes alone
#
# Prints what the simulator produced, what floe processed (its summary line)
# and the CPU each process used (seconds). Needs tansu (`cargo install
# --locked tansu --features dynostore`) and a release build (cargo build
# --release). Uses its own in-memory broker on port 18898, with a 6-partition
# topic.
set -euo pipefail
cd "$(dirname "$0")/.."

mode=${1:?live or drain}
port=18898
floe=target/release/floe
tansu=$(command -v tansu || echo "${CARGO_HOME:-$HOME/.cargo}/bin/tansu")
dir=$(mktemp -d)
trap 'kill -KILL $broker 2>/dev/null; rm -rf "$dir"' EXIT

"$tansu" broker --listener-url "tcp://127.0.0.1:$port" --advertised-listener-url "tcp://127.0.0.1:$port" \
    --storage-engine memory://tansu/ > "$dir/tansu.log" 2>&1 &
broker=$!
sleep 1
"$tansu" topic create telemetry --partitions 6 --broker "tcp://127.0.0.1:$port" > /dev/null

input="trucks=kafka://127.0.0.1:$port/telemetry?from=earliest&group=bench"
cpu() { awk '{printf "%.1f", ($14 + $15) / 100}' "/proc/$1/stat"; }
simulate() { "$floe" simulate simulators/trucks.yaml --to "kafka://127.0.0.1:$port/telemetry" "$@" 2>&1 | tail -1; }
stop_floe() {
    floe_cpu=$(cpu "$1")
    kill -TERM "$1"
    wait "$1" || true
    grep "events in" "$dir/floe.log"
    echo "cpu: floe ${floe_cpu}s, tansu $(echo "$(cpu "$broker") - $broker_cpu" | bc)s"
}

case $mode in
live)
    rate=${2:?rate}; seconds=${3:?seconds}
    broker_cpu=$(cpu "$broker")
    "$floe" run pipelines/cold-chain.yaml --input "$input" > /dev/null 2> "$dir/floe.log" &
    pid=$!
    sleep 4   # joining the group
    simulate --rate "$rate" --duration "${seconds}s"
    # Whatever floe has not processed one second after the last record
    # is a backlog: it did not keep up.
    sleep 1
    stop_floe $pid
    ;;
drain)
    records=${2:?records}
    # --rate R --duration 1s is exactly R records, however long they take.
    echo "produced: $(simulate --rate "$records" --duration 1s)"
    broker_cpu=$(cpu "$broker")
    start=$(date +%s.%N)
    "$floe" run pipelines/cold-chain.yaml --input "$input" > /dev/null 2> "$dir/floe.log" &
    pid=$!
    # Drained when floe stops using CPU.
    last=-1
    while sleep 0.5; do now=$(cpu $pid); [ "$now" = "$last" ] && break; last=$now; done
    echo "drained in $(echo "$(date +%s.%N) - $start - 0.5" | bc) s (including ~3 s joining the group)"
    stop_floe $pid
    ;;
*)
    echo "usage: benches/kafka.sh live RATE SECONDS | drain RECORDS" >&2
    exit 2
    ;;
esac
