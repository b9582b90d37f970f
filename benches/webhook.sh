#!/usr/bin/env bash
# Webhook delivery throughput to a local receiver.
#
#   benches/webhook.sh ALERTS BATCH [STATE]
#
# Replays ALERTS readings as fast as floe reads them, each of which changes
# its truck's alert state (so each raises one alert), through a threshold
# into a `webhook` sink with `batch: BATCH`, to a minimal keep-alive HTTP
# receiver on 127.0.0.1 (python3, asyncio) that answers 200 to everything
# and counts alerts. STATE=1 runs floe with a state dir: alerts go through
# the sink's spool on disk. Prints the alerts received, the wall time of
# the run, and alerts/s. Needs python3 and a release build
# (cargo build --release); FLOE=PATH runs another floe binary.
set -euo pipefail
cd "$(dirname "$0")/.."

alerts=${1:?alerts}
batch=${2:?batch}
state=${3:-0}
port=18898
floe=${FLOE:-target/release/floe}
dir=$(mktemp -d)
trap 'kill $(cat "$dir/receiver.pid" 2>/dev/null) 2>/dev/null; rm -rf "$dir"' EXIT

cat > "$dir/receiver.py" <<'PY'
import asyncio, json, os, sys
count = 0
async def serve(reader, writer):
    global count
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":")[1])
            body = await reader.readexactly(length)
            count += body.count(b'"alert_id"')
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
async def report():
    while True:
        await asyncio.sleep(0.2)
        with open(sys.argv[2] + ".tmp", "w") as f:
            f.write(str(count))
        os.replace(sys.argv[2] + ".tmp", sys.argv[2])
async def main():
    server = await asyncio.start_server(serve, "127.0.0.1", int(sys.argv[1]))
    asyncio.ensure_future(report())
    async with server:
        await server.serve_forever()
asyncio.run(main())
PY
python3 "$dir/receiver.py" $port "$dir/count" &
echo $! > "$dir/receiver.pid"

# 100 trucks, each alternating 6 C and 2 C: every reading is a state change.
python3 - "$alerts" > "$dir/in.jsonl" <<'PY'
import sys
n = int(sys.argv[1])
for i in range(n):
    truck, step = i % 100, i // 100
    temp = 6.0 if step % 2 == 0 else 2.0
    ms = 1795428000000 + step * 10000
    print('{"device":"t%d","ts":%d,"temperature_c":%s}' % (truck, ms, temp))
PY

state_line=""
if [ "$state" = 1 ]; then state_line="state: {dir: state}"; fi
cat > "$dir/p.yaml" <<YAML
name: webhook-bench
$state_line
sources:
  trucks: {type: file, path: in.jsonl, key: device, time: ts, speed: 0}
operators:
  flips: {type: threshold, inputs: [trucks], field: temperature_c, above: 4.0}
sinks:
  hook: {type: webhook, inputs: [flips], url: "http://127.0.0.1:$port/alerts", batch: $batch}
YAML

until python3 -c "import socket; socket.create_connection(('127.0.0.1', $port))" 2>/dev/null; do sleep 0.1; done
start=$(date +%s.%N)
(cd "$dir" && FLOE_LOG=warn "$OLDPWD/$floe" run p.yaml >/dev/null)
end=$(date +%s.%N)
sleep 0.5
received=$(cat "$dir/count")
python3 -c "
secs = $end - $start
print(f'alerts received: $received of $alerts; batch $batch; state $state; {secs:.2f} s; {$received / secs:,.0f} alerts/s')
"
