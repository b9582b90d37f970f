#!/usr/bin/env bash
# Kafka throughput through a local tansu broker, with the cold-chain pipeline.
#
#   benches/kafka.sh live RATE SECONDS   simulator -> Kafka -> floe, all at once:
#                                        does floe keep up with RATE records/s?
#   benches/kafka.sh drain RECORDS       RECORDS already on the topic, read from
#                                        the earliest: how fast floe consumes alone
#   benches/kafka.sh group N RECORDS     the same drain by N instances in one
#                                        consumer group, each with a state dir
#                                        (keyed state in the changelog topic):
#                                        how the work splits, CPU per event
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
group)
    # The instances join first (the group settles: every one has
    # partitions and no assignment changed for 3 s); then RECORDS are
    # produced and the time until the instances together have read them
    # all is measured.
    n=${2:?instances}; records=${3:?records}
    input="trucks=kafka://127.0.0.1:$port/telemetry?from=earliest&group=bench-$n${EXTRA:-}"
    pids=()
    for i in $(seq "$n"); do
        FLOE_LOG=info "$floe" run pipelines/cold-chain.yaml --input "$input" --state-dir "$dir/state-$i" \
            --http "127.0.0.1:$((18900 + i))" > /dev/null 2> "$dir/floe-$i.log" &
        pids+=($!)
    done
    settled() {
        for i in $(seq "$n"); do
            grep "assigned" "$dir/floe-$i.log" | tail -1 | grep -q "assigned telemetry" || return 1
        done
        local newest
        newest=$(stat -c %Y "$dir"/floe-*.log | sort -n | tail -1)
        [ $(( $(date +%s) - newest )) -ge 3 ]
    }
    until settled; do sleep 0.2; done
    for i in $(seq "$n"); do echo "instance $i: $(grep assigned "$dir/floe-$i.log" | tail -1 | sed 's/.*assigned/assigned/')"; done
    broker_cpu=$(cpu "$broker")
    declare -a cpu0
    for i in $(seq "$n"); do cpu0[$i]=$(cpu "${pids[$((i - 1))]}"); done
    read_so_far() {
        for i in $(seq "$n"); do
            curl -s "http://127.0.0.1:$((18900 + i))/metrics" | awk '/^floe_source_events_total/ {s += $2} END {print s + 0}'
        done | awk '{s += $1} END {print s + 0}'
    }
    start=$(date +%s.%N)
    echo "produced: $(simulate --rate "$records" --duration 1s)"
    until [ "$(read_so_far)" -ge "$records" ]; do sleep 0.05; done
    echo "drained by $n in $(echo "$(date +%s.%N) - $start" | bc) s (from the start of producing)"
    total_cpu=0
    for i in $(seq "$n"); do
        c=$(echo "$(cpu "${pids[$((i - 1))]}") - ${cpu0[$i]}" | bc)
        total_cpu=$(echo "$total_cpu + $c" | bc)
        kill -TERM "${pids[$((i - 1))]}"
        wait "${pids[$((i - 1))]}" || true
        echo "instance $i: cpu ${c}s, $(grep "events in" "$dir/floe-$i.log")"
    done
    echo "cpu: floe ${total_cpu}s in all ($(echo "scale=2; $total_cpu * 1000000 / $records" | bc) us per event), tansu $(echo "$(cpu "$broker") - $broker_cpu" | bc)s"
    ;;
*)
    echo "usage: benches/kafka.sh live RATE SECONDS | drain RECORDS | group N RECORDS" >&2
    exit 2
    ;;
esac
