#!/usr/bin/env bash
# How much of the work verification re-renders (issue 19): `tessera render` of one HD
# frame through the whole pipeline (one node, a verifier re-rendering its sampled 8x8
# blocks), on the priority and economy tiers, and the README's first command (256x256,
# economy). Each run's `--json` summary gives the rendering and verifying seconds and the
# pixel-samples rendered and re-rendered; the fraction is measured from the proof bundle,
# not computed from k. Writes benches/results/verification-blocks.json and prints a table.
#
# Settings (environment variables, defaults in brackets):
#   SCENE     the scene                          [scenes/cornell-box.glb]
#   W H SPP   the HD frame                       [1920 1080 64]
#   TIERS     tiers of the HD runs               [priority economy]
#   TESSERA   the tessera binary                 [target/release/tessera]
#
# A node of `tessera render` starts at trust 0, so it is sampled as a new node (k x 2):
# 270 pixel draws on priority, 810 on economy. A node of established trust would be
# sampled k = 135 (priority) and 405 (economy): at most half these blocks.
set -euo pipefail
cd "$(dirname "$0")/.."

SCENE="${SCENE:-scenes/cornell-box.glb}"
W="${W:-1920}"
H="${H:-1080}"
SPP="${SPP:-64}"
TIERS="${TIERS:-priority economy}"
TESSERA="${TESSERA:-target/release/tessera}"
OUT=benches/results/verification-blocks.json
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

run() { # name tier width height spp
  local name=$1 tier=$2 w=$3 h=$4 spp=$5
  "$TESSERA" render "$SCENE" -o "$tmp/$name.png" --proof "$tmp/$name.proof.json" \
    --width "$w" --height "$h" --spp "$spp" --tier "$tier" --data "$tmp/data" --json \
    > "$tmp/$name.json"
  "$TESSERA" audit "$tmp/$name.proof.json" > /dev/null
  python3 - "$tmp/$name.json" "$name" "$tier" "$w" "$h" "$spp" "$SCENE" <<'EOF'
import json, sys
s = json.load(open(sys.argv[1]))
name, tier, (w, h, spp), scene = sys.argv[2], sys.argv[3], map(int, sys.argv[4:7]), sys.argv[7]
row = {"run": name, "scene": scene, "tier": tier, "width": w, "height": h, "spp": spp,
       "seconds": round(s["seconds"], 2),
       "rendering_seconds": round(s["rendering_seconds"], 2),
       "verifying_seconds": round(s["verifying_seconds"], 2),
       "rendered_pixel_samples": s["rendered_pixel_samples"],
       "rerendered_pixel_samples": s["rerendered_pixel_samples"],
       "rerendered_fraction": s["rerendered_fraction"],
       "blocks_sampled": sum(n["sampled"] for n in s["nodes"])}
print(json.dumps(row))
EOF
}

{
  for tier in $TIERS; do run "hd-$tier" "$tier" "$W" "$H" "$SPP"; done
  run readme economy 256 256 64
} > "$tmp/rows.jsonl"

python3 - "$tmp/rows.jsonl" "$OUT" "$(git rev-parse --short HEAD)" "$(date -u +%FT%TZ)" <<'EOF'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
json.dump({"commit": sys.argv[3], "date": sys.argv[4], "runs": rows}, open(sys.argv[2], "w"), indent=2)
print("| run | tier | frame | spp | rendering s | verifying s | blocks | re-rendered |")
print("|---|---|---|---|---|---|---|---|")
for r in rows:
    print(f"| {r['run']} | {r['tier']} | {r['width']}x{r['height']} | {r['spp']} | {r['rendering_seconds']} "
          f"| {r['verifying_seconds']} | {r['blocks_sampled']} | {100 * r['rerendered_fraction']:.2f} % |")
EOF
echo "wrote $OUT"
