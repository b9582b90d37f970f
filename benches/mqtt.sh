#!/usr/bin/env bash
# MQTT throughput through a local mosquitto, with the cold-chain pipeline.
#
#   benches/mqtt.sh live QOS RATE SECONDS   simulator -> mosquitto -> floe, all at once:
#                                           does floe keep up with RATE messages/s?
#   benches/mqtt.sh drain QOS MESSAGES      MESSAGES queued for floe while it was down,
#                                           then drained: how fast floe consumes alone
#
# Prints what the simulator published, what floe processed (its summary
# line), and the CPU each process used (seconds). Needs mosquitto and a
# release build (cargo build --release). Uses its own broker on port 18899
# with persistence on and no queue limit, as the README advises.
#
# FLOE=PATH runs another floe binary (to compare builds); STATE=1 runs
# floe with a state dir (checkpoints every second, QoS 1 acknowledged from
# the journal); INFLIGHT=N sets mosquitto's max_inflight_messages
# (default 20).
set -euo pipefail
cd "$(dirname "$0")/.."

mode=${1:?live or drain}
qos=${2:?qos}
port=18899
floe=${FLOE:-target/release/floe}
dir=$(mktemp -d)
# SIGKILL: a broker told to stop would first save its whole store.
trap 'kill -KILL $(cat "$dir/mosquitto.pid" 2>/dev/null) 2>/dev/null; sleep 0.2; rm -rf "$dir"' EXIT

cat > "$dir/mosquitto.conf" <<CONF
user root
persistence true
persistence_location $dir/
max_queued_messages 0
max_inflight_messages ${INFLIGHT:-20}
pid_file $dir/mosquitto.pid
listener $port 127.0.0.1
allow_anonymous true
CONF
mosquitto -d -c "$dir/mosquitto.conf" 2>/dev/null
sleep 0.5
broker=$(cat "$dir/mosquitto.pid" 2>/dev/null) || { echo "mosquitto did not start on port $port" >&2; exit 2; }

input="trucks=mqtt://127.0.0.1:$port/fleet/+/telemetry?qos=$qos"
state=()
if [ "${STATE:-0}" = 1 ]; then state=(--state-dir "$dir/state"); fi
cpu() { awk '{printf "%.1f", ($14 + $15) / 100}' "/proc/$1/stat"; }
simulate() { "$floe" simulate simulators/trucks.yaml --to "mqtt://127.0.0.1:$port?qos=$qos" "$@" 2>&1 | tail -1; }
stop_floe() {
    floe_cpu=$(cpu "$1")
    kill -TERM "$1"
    wait "$1" || true
    grep "events in" "$dir/floe.log"
    echo "cpu: floe ${floe_cpu}s, mosquitto $(echo "$(cpu "$broker") - $broker_cpu" | bc)s"
}

case $mode in
live)
    rate=${3:?rate}; seconds=${4:?seconds}
    broker_cpu=0
    "$floe" run pipelines/cold-chain.yaml --input "$input" "${state[@]}" > /dev/null 2> "$dir/floe.log" &
    pid=$!
    sleep 1
    simulate --rate "$rate" --duration "${seconds}s"
    # Whatever floe has not processed one second after the last message
    # is a backlog: it did not keep up.
    sleep 1
    stop_floe $pid
    ;;
drain)
    messages=${3:?messages}
    # Make floe's session known to the broker, then stop floe.
    "$floe" run pipelines/cold-chain.yaml --input "$input" "${state[@]}" > /dev/null 2>&1 &
    pid=$!
    sleep 1
    kill -TERM $pid
    wait $pid || true
    simulate --rate 100000 --duration "$((messages / 100000))s"
    broker_cpu=$(cpu "$broker")
    start=$(date +%s.%N)
    "$floe" run pipelines/cold-chain.yaml --input "$input" "${state[@]}" > /dev/null 2> "$dir/floe.log" &
    pid=$!
    # Drained when floe stops using CPU.
    last=-1
    while sleep 0.2; do now=$(cpu $pid); [ "$now" = "$last" ] && break; last=$now; done
    echo "drained in $(echo "$(date +%s.%N) - $start - 0.2" | bc) s"
    stop_floe $pid
    ;;
*)
    echo "usage: $0 live QOS RATE SECONDS | drain QOS MESSAGES" >&2
    exit 1
    ;;
esac
