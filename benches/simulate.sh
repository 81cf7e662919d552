#!/usr/bin/env bash
# Detection by cheat shape (issue 19): `tessera simulate` on the priority tier for every
# shape (whole tiles, scattered blocks, lower spp everywhere, small patches in many tiles)
# at forged work fractions 1 %, 5 % and 20 %. Each run's `--json` report goes into
# benches/results/simulate-shapes.json (with the commit and the date) as the binary printed
# it, and the table below is read from those reports, not recomputed.
#
# Settings (environment variables, defaults in brackets):
#   JOBS      jobs per run                        [800]
#   SHAPES    the shapes                          [tiles blocks spp patches]
#   FS        forged fractions                    [0.01 0.05 0.20]
#   TILE      tile edge in pixels                 [16]
#   RUNS      instead of SHAPES x FS at TILE: runs "shape:f:tile[:jobs]", space-separated
#   SPP       samples per pixel (spp must resolve f for the spp shape) [100]
#   TIER      the tier                            [priority]
#   OUT       the JSON file                       [benches/results/simulate-shapes.json]
#   TESSERA   the tessera binary                  [target/release/tessera]
#
# Every run has 160 tiles per node and one task per frame (`--tiles 160 --batch 160`, as
# tests/simulate.rs): with 16 x 16 tiles a node commits 640 blocks, with 64 x 64 tiles
# 10,240, so the check's k = 135 pixel draws sample a part of them either way. Runs are
# niced (the machine is shared) and use every core.
set -euo pipefail
cd "$(dirname "$0")/.."

JOBS="${JOBS:-800}"
SHAPES="${SHAPES:-tiles blocks spp patches}"
FS="${FS:-0.01 0.05 0.20}"
TILE="${TILE:-16}"
SPP="${SPP:-100}"
TIER="${TIER:-priority}"
OUT="${OUT:-benches/results/simulate-shapes.json}"
TESSERA="${TESSERA:-target/release/tessera}"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

if [ -z "${RUNS:-}" ]; then
  RUNS=$(for shape in $SHAPES; do for f in $FS; do printf '%s ' "$shape:$f:$TILE"; done; done)
fi
for run in $RUNS; do
  IFS=: read -r shape f tile jobs <<< "$run"
  jobs="${jobs:-$JOBS}"
  echo "simulate --shape $shape --forged-fraction $f --tile $tile ($jobs jobs)" >&2
  # Exit 1 means an invariant broke (an honest node rejected, a ledger unbalanced): the
  # report is still written and the table shows it.
  nice -n 10 "$TESSERA" simulate --jobs "$jobs" --shape "$shape" --forged-fraction "$f" \
    --tier "$TIER" --tiles 160 --batch 160 --tile "$tile" --spp "$SPP" --json \
    > "$tmp/run.json" || [ $? -eq 1 ]
  cat "$tmp/run.json" >> "$tmp/runs.json"
done

command="tessera simulate --jobs N --shape S --forged-fraction F --tier $TIER --tiles 160 --batch 160 --tile T --spp $SPP --json"
python3 - "$tmp/runs.json" "$OUT" "$(git rev-parse --short HEAD)" "$(date -u +%FT%TZ)" "$command" "$(nproc)" <<'EOF'
import json, sys
runs_file, out, commit, date, command, cores = sys.argv[1:7]
text = open(runs_file).read()
runs, dec, at = [], json.JSONDecoder(), 0
while at < len(text):
    while at < len(text) and text[at].isspace():
        at += 1
    if at < len(text):
        r, at = dec.raw_decode(text, at)
        runs.append(r)
json.dump({"format": "tessera-simulate-shapes/1", "commit": commit, "date": date,
           "command": command, "machine": f"{cores} cores, no GPU (the stand-in renderer needs none)",
           "runs": runs}, open(out, "w"), indent=2)
pct = lambda x: f"{100 * x:.2f} %"
print(f"commit {commit}, {date}: {command}\n")
print("| shape | tile | f | forged work | k | blocks | jobs | measured | 99 % CI | predicted | agrees "
      "| forgery sampled | inconclusive | honest false rejects | cost |")
print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
for r in runs:
    print(f"| {r['shape']} | {r['tile_size']} | {pct(r['forged_fraction'])} | {pct(r['forged_work_fraction'])} "
          f"| {r['k']} | {r['blocks_per_node']} | {r['jobs']} | {r['measured_detection']:.4f} "
          f"| {r['ci99'][0]:.4f}–{r['ci99'][1]:.4f} | {r['predicted_detection']:.4f} "
          f"| {'yes' if r['agrees'] else '**no**'} | {r['forged_sampled_rate']:.4f} "
          f"| {r['cheater_inconclusive']} "
          f"| {r['honest_false_rejects']:g} ({r['honest_fails']}+{r['honest_inconclusive']} of {r['honest_node_rounds']}) "
          f"| {r['verification_cost']:.4f} |")
EOF
echo "wrote $OUT" >&2
