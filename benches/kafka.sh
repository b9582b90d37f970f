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
# topic. EXTRA="&NAME=VALUE..." adds librdkafka properties to floe's consumer
# (EXTRA="&fetch.wait.max.ms=5": tansu holds every fetch that long; floe's
# default is 100).
set -euo pipefail
cd "$(dirname "$0")/.."

mode=${1:?live or drain}
port=18898
floe=target/release/floe
tansu=$(command -v tansu || echo "${CARGO_HOME:-$HOME/.cargo}/bin/tansu")
dir=$(mktemp -d)
trap 'kill -KILL $broker 2>/dev/null; wait $broker 2>/dev/null; rm -rf "$dir"' EXIT

"$tansu" broker --listener-url "tcp://127.0.0.1:$port" --advertised-listener-url "tcp://127.0.0.1:$port" \
    --storage-engine memory://tansu/ > "$dir/tansu.log" 2>&1 &
broker=$!
# tansu may accept connections a moment before it serves requests.
for _ in $(seq 50); do
    "$tansu" topic create telemetry --partitions 6 --broker "tcp://127.0.0.1:$port" > /dev/null 2>&1 && break
    sleep 0.2
done

# Lag is logged every second: the drain ends at the first line with none.
input="trucks=kafka://127.0.0.1:$port/telemetry?from=earliest&group=bench&statistics.interval.ms=1000${EXTRA:-}"
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
    FLOE_LOG=info "$floe" run pipelines/cold-chain.yaml --input "$input" > /dev/null 2> "$dir/floe.log" &
    pid=$!
    until grep -q assigned "$dir/floe.log"; do sleep 0.05; done
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
    FLOE_LOG=info "$floe" run pipelines/cold-chain.yaml --input "$input" > /dev/null 2> "$dir/floe.log" &
    pid=$!
    # Timed from the partitions' assignment (joining the group takes ~3 s)
    # until floe stops using CPU.
    until grep -q assigned "$dir/floe.log"; do sleep 0.05; done
    start=$(date +%s.%N)
    until grep "lag" "$dir/floe.log" | tail -1 | grep -qv "[1-9][0-9]* records"; do sleep 0.05; done
    echo "drained in $(echo "$(date +%s.%N) - $start" | bc) s (to the 1 s lag report that showed no lag)"
    stop_floe $pid
    ;;
*)
    echo "usage: benches/kafka.sh live RATE SECONDS | drain RECORDS" >&2
    exit 2
    ;;
esac
