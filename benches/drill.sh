#!/usr/bin/env bash
# Every drill mode on a frame large enough that block sampling is partial (issue 19: "every
# drill mode is still caught, unpaid and slashed, and the final image equals an honest
# run's"). One honest `tessera render` with three nodes, then one per mode with the third
# node dishonest. Each run's bundle is audited; each drill's EXR must equal the honest run's
# byte for byte; the cheater's row of `--json` says whether it was caught (its first round
# failed), paid and slashed, and how many of its committed pixels were sampled. Writes
# benches/results/drill-blocks.json and prints a table; exits 1 if a cheater was not caught,
# was paid, was not slashed, or left the image different.
#
# Settings (environment variables, defaults in brackets):
#   SCENE     the scene                   [scenes/cornell-box.glb]
#   W H SPP   the frame                   [1024 576 16]
#   TIER      the tier                    [priority]
#   BATCH     tiles per task              [8]
#   MODES     drill modes                 [low-spp noise black copy partial]
#   TESSERA   the tessera binary          [target/release/tessera]
set -euo pipefail
cd "$(dirname "$0")/.."

SCENE="${SCENE:-scenes/cornell-box.glb}"
W="${W:-1024}"
H="${H:-576}"
SPP="${SPP:-16}"
TIER="${TIER:-priority}"
BATCH="${BATCH:-8}"
MODES="${MODES:-low-spp noise black copy partial}"
TESSERA="${TESSERA:-target/release/tessera}"
OUT=benches/results/drill-blocks.json
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

run() { # name [drill flags...]
  local name=$1
  shift
  "$TESSERA" render "$SCENE" -o "$tmp/$name.png" --width "$W" --height "$H" --spp "$SPP" \
    --tier "$TIER" --batch "$BATCH" --nodes 3 --data "$tmp/data" --json "$@" > "$tmp/$name.json" 2> "$tmp/$name.log"
  "$TESSERA" audit "$tmp/$name.proof.json" > "$tmp/$name.audit" ||
    { cat "$tmp/$name.audit" >&2; echo "$name: audit failed" >&2; exit 1; }
}

run honest
for mode in $MODES; do
  run "$mode" --dishonest-nodes 1 --dishonest-mode "$mode"
  if cmp -s "$tmp/honest.exr" "$tmp/$mode.exr"; then echo same > "$tmp/$mode.image"; else echo differs > "$tmp/$mode.image"; fi
done

python3 - "$tmp" "$OUT" "$W" "$H" "$SPP" "$TIER" "$SCENE" "$(git rev-parse --short HEAD)" "$(date -u +%FT%TZ)" $MODES <<'EOF'
import json, sys
tmp, out, w, h, spp, tier, scene, commit, date = sys.argv[1:10]
modes = sys.argv[10:]
rows, ok = [], True
for mode in modes:
    s = json.load(open(f"{tmp}/{mode}.json"))
    image = open(f"{tmp}/{mode}.image").read().strip()
    cheater = [n for n in s["nodes"] if "(dishonest" in n["node"]]
    if not cheater:
        sys.exit(f"{mode}: the dishonest node got no tiles (more tiles or a smaller BATCH)")
    first = min(cheater, key=lambda n: n["round"])
    paid = sum(n["paid"] + n["held_back"] for n in cheater)
    slashed = sum(n["slashed"] for n in cheater)
    row = {"mode": mode, "decision": first["decision"], "tiles": first["tiles"],
           "pixels": first["pixels"], "sampled_blocks": first["sampled"],
           "sampled_pixels": first["sampled_pixels"],
           "sampled_fraction": first["sampled_pixels"] / max(first["pixels"], 1),
           "paid": paid, "slashed": slashed, "image": image,
           "rerendered_fraction": s["rerendered_fraction"]}
    row["holds"] = first["decision"] == "fail" and paid == 0 and slashed > 0 and image == "same"
    ok &= row["holds"]
    rows.append(row)
json.dump({"commit": commit, "date": date, "scene": scene, "width": int(w), "height": int(h),
           "spp": int(spp), "tier": tier, "runs": rows}, open(out, "w"), indent=2)
print(f"{scene} {w}x{h} {spp} spp, tier {tier}, 3 nodes, one dishonest")
print("| mode | cheater's tiles | blocks sampled | its pixels sampled | decision | paid | slashed | image = honest |")
print("|---|---|---|---|---|---|---|---|")
for r in rows:
    print(f"| {r['mode']} | {r['tiles']} | {r['sampled_blocks']} | {100 * r['sampled_fraction']:.1f} % "
          f"| {r['decision']} | {r['paid']} | {r['slashed']} | {'yes' if r['image'] == 'same' else 'NO'} |")
sys.exit(0 if ok else 1)
EOF
echo "wrote $OUT"
