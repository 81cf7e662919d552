#!/usr/bin/env bash
# How much of an established node's work verification re-renders (issue 19), on the real
# farm: a coordinator, a verifier and one node as daemons over RabbitMQ. The node first
# earns trust the way every node does, one clean round per job, on WARMUP small jobs;
# once `tessera nodes` shows it at or above the new-node threshold (10), one HD frame is
# submitted on the priority tier, fetched with its proof bundle and audited. The fraction
# re-rendered is what `tessera audit --json` measures from the bundle (pixel-samples of the
# sampled blocks over those of the committed tiles), not computed from k. Puts the run into
# benches/results/verification-blocks.json (list "farm", one run per tier) and prints it.
#
# Settings (environment variables, defaults in brackets):
#   SCENE     the scene                           [scenes/cornell-box.glb]
#   W H SPP   the HD frame                        [1920 1080 64]
#   TIER      the HD job's tier                   [priority]
#   WARMUP    small jobs that build trust first   [10]
#   AMQP      RabbitMQ URL          [amqp://guest:guest@127.0.0.1:5672/%2f]
#   TESSERA   the tessera binary                  [target/release/tessera]
set -euo pipefail
cd "$(dirname "$0")/.."

SCENE="${SCENE:-scenes/cornell-box.glb}"
W="${W:-1920}"
H="${H:-1080}"
SPP="${SPP:-64}"
TIER="${TIER:-priority}"
WARMUP="${WARMUP:-10}"
AMQP="${AMQP:-amqp://guest:guest@127.0.0.1:5672/%2f}"
TESSERA="${TESSERA:-target/release/tessera}"
OUT=benches/results/verification-blocks.json

tmp=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$tmp"
}
trap cleanup EXIT

port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
url="http://127.0.0.1:$port"
ns="bench-verification-$$"
token=bench-client-token
admin=bench-admin-token-0
vtoken=bench-verifier-token
client=(--coordinator "$url" --token "$token")

"$TESSERA" keygen -o "$tmp/node.key" > /dev/null
"$TESSERA" keygen -o "$tmp/verifier.key" > /dev/null

"$TESSERA" coordinator --amqp "$AMQP" --listen "127.0.0.1:$port" --data "$tmp/coordinator" \
  --namespace "$ns" --api-token "studio=$token" --admin-token "$admin" \
  --verifier-token "$vtoken" --challenge-window 0 > "$tmp/coordinator.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do
  (echo > "/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
  sleep 0.2
done
"$TESSERA" verifier --amqp "$AMQP" --coordinator "$url" --key "$tmp/verifier.key" \
  --token "$vtoken" --cache "$tmp/verifier-cache" > "$tmp/verifier.log" 2>&1 &
pids+=($!)
"$TESSERA" node --amqp "$AMQP" --coordinator "$url" --key "$tmp/node.key" \
  --cache "$tmp/node-cache" > "$tmp/node.log" 2>&1 &
pids+=($!)
for _ in $(seq 200); do
  grep -q "node serving" "$tmp/node.log" && grep -q "verifier serving" "$tmp/verifier.log" && break
  sleep 0.2
done
grep -q "node serving" "$tmp/node.log" || { cat "$tmp"/*.log >&2; echo "the node did not start" >&2; exit 1; }

credit() { "$TESSERA" credit "$@" --coordinator "$url" --token "$admin" > /dev/null; }
credit --client=studio --amount 100000000000 --reference studio
trust() {
  "$TESSERA" nodes --coordinator "$url" --token "$admin" --json |
    python3 -c 'import json, sys; ns = json.load(sys.stdin); ns = ns.get("nodes", ns) if isinstance(ns, dict) else ns; print(max([n["trust"] for n in ns] or [0]))'
}
stake_key=$("$TESSERA" nodes --coordinator "$url" --token "$admin" --json |
  python3 -c 'import json, sys; ns = json.load(sys.stdin); ns = ns.get("nodes", ns) if isinstance(ns, dict) else ns; print(ns[0]["key"])')
credit "--stake=$stake_key" --amount 1000000 --reference stake

for i in $(seq "$WARMUP"); do
  job=$("$TESSERA" submit "$SCENE" "${client[@]}" --width 32 --height 32 --spp 4 --bounces 1 \
    --tile-size 16 --tier "$TIER" | tail -n 1)
  "$TESSERA" fetch "$job" "${client[@]}" --wait -o "$tmp/warmup-$i.png" > /dev/null
done
t=$(trust)
echo "node trust after $WARMUP warm-up jobs: $t" >&2

start=$(date +%s.%N)
job=$("$TESSERA" submit "$SCENE" "${client[@]}" --width "$W" --height "$H" --spp "$SPP" \
  --tier "$TIER" | tail -n 1)
"$TESSERA" fetch "$job" "${client[@]}" --wait -o "$tmp/hd.png" --proof "$tmp/hd.proof.json" > /dev/null
end=$(date +%s.%N)
"$TESSERA" audit "$tmp/hd.proof.json" --json > "$tmp/audit.json" || { cat "$tmp/audit.json" >&2; exit 1; }

python3 - "$tmp/audit.json" "$tmp/hd.proof.json" "$OUT" "$t" "$TIER" "$W" "$H" "$SPP" "$SCENE" \
  "$(python3 -c "print(round($end - $start, 1))")" "$(git rev-parse --short HEAD)" "$(date -u +%FT%TZ)" <<'EOF'
import json, sys
audit, bundle = json.load(open(sys.argv[1])), json.load(open(sys.argv[2]))
out, trust, tier = sys.argv[3], int(sys.argv[4]), sys.argv[5]
w, h, spp = map(int, sys.argv[6:9])
scene, seconds, commit, date = sys.argv[9], float(sys.argv[10]), sys.argv[11], sys.argv[12]
work = audit["work"]
blocks = sum(len(s["indices"]) for r in bundle["rounds"] for s in r["samples"])
row = {"run": f"farm-{tier}-trust-{trust}", "scene": scene, "tier": tier, "width": w,
       "height": h, "spp": spp, "node_trust": trust, "seconds": seconds,
       "rendered_pixel_samples": work["rendered"], "rerendered_pixel_samples": work["rerendered"],
       "rerendered_fraction": work["fraction"], "blocks_sampled": blocks,
       "commit": commit, "date": date}
doc = json.load(open(out))
farm = [r for r in doc.get("farm", []) if isinstance(r, dict) and r.get("tier") != tier]
doc["farm"] = sorted(farm + [row], key=lambda r: r["tier"])
json.dump(doc, open(out, "w"), indent=2)
print(json.dumps(row, indent=2))
EOF
echo "wrote $OUT"
