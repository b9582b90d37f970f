#!/usr/bin/env bash
# A pipeline of RULES threshold rules (default 10,000) on one source: how
# long `floe validate` takes and how much memory it and an idle `floe run`
# (every rule built, no key yet) use, against a pipeline of one rule.
#
#   benches/many_rules.sh [RULES]
#
# Needs python3, GNU time (/usr/bin/time) and a release build
# (cargo build --release); FLOE=PATH runs another floe binary.
set -euo pipefail
cd "$(dirname "$0")/.."

rules=${1:-10000}
floe=$(realpath "${FLOE:-target/release/floe}")
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT

python3 - "$rules" "$dir" <<'PY'
import sys
rules, dir = int(sys.argv[1]), sys.argv[2]
def pipeline(n):
    lines = ["name: many", "sources:", "  assets: {type: file, path: in.jsonl, key: device, time: ts}", "operators:"]
    for i in range(n):
        lines.append(f"  rule_{i}: {{type: threshold, inputs: [assets], field: temp_{i % 100}, "
                     f"above: {i % 50 + 10}, for: 1m, clear_below: {i % 50 + 9}}}")
    lines += ["sinks:", "  out: {type: stdout, inputs: [" + ", ".join(f"rule_{i}" for i in range(n)) + "]}"]
    return "\n".join(lines) + "\n"
open(f"{dir}/many.yaml", "w").write(pipeline(rules))
open(f"{dir}/one.yaml", "w").write(pipeline(1))
open(f"{dir}/in.jsonl", "w").close()
PY

cd "$dir"
measure() { /usr/bin/time -f "%e %M" "$floe" "$@" 2>&1 >/dev/null | tail -1; }
read -r v_secs v_kb < <(measure validate many.yaml)
read -r _ v1_kb < <(measure validate one.yaml)
read -r r_secs r_kb < <(measure run many.yaml)
read -r _ r1_kb < <(measure run one.yaml)
python3 -c "
n = $rules
print(f'$rules rules: validate {$v_secs:.2f} s, {($v_kb - $v1_kb) / n:.1f} KB per rule; '
      f'idle run {$r_secs:.2f} s to start and end, {($r_kb - $r1_kb) / n:.1f} KB per rule')
"
