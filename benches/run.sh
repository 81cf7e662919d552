#!/usr/bin/env bash
# Tessera vs Blender Cycles (CPU), one command: the speed run of `tessera bench render`
# and benches/cycles.py on the same scenes and settings, then a long run of the quality
# scenes in both renderers compared with `tessera compare --exposure-match`.
# Writes benches/results/{render-<device>,cycles-cpu,summary-<device>}.json and
# summary-<device>.md, and prints the summary. Images go to target/bench/.
#
# Settings (environment variables, defaults in brackets):
#   SCENES     speed-run scenes, names in scenes/ or paths     [every .glb/.gltf in scenes/]
#   LARGE      folder for large.gltf (generated if missing)    [none: no large scene]
#   W H        resolution                                       [256 256]
#   SPP        speed-run samples per pixel                      [64]
#   BOUNCES    max bounces (every per-type limit in Cycles)     [8]
#   TILE       tile edge of tessera's extra tiled runs (tiles one at a time, and
#              tasks of 16 tiles as a node renders them), 0 = none        [0]
#   QSCENES    quality-run scenes                               [cornell-box blender-pbr]
#   QSPP       quality-run samples per pixel                    [256]
#   BPY        Python with bpy 4.5                              [/work/bpyenv/bin/python]
#   TESSERA    the tessera binary                               [target/release/tessera]
#   SKIP_SPEED=1 / SKIP_QUALITY=1 skip a phase (the summary uses what is there)
set -euo pipefail
cd "$(dirname "$0")/.."

BPY="${BPY:-/work/bpyenv/bin/python}"
TESSERA="${TESSERA:-target/release/tessera}"
W="${W:-256}"
H="${H:-256}"
SPP="${SPP:-64}"
BOUNCES="${BOUNCES:-8}"
TILE="${TILE:-0}"
QSPP="${QSPP:-256}"
QSCENES="${QSCENES:-cornell-box blender-pbr}"
RESULTS=benches/results
WORK=target/bench
mkdir -p "$RESULTS" "$WORK"

if [[ "$TESSERA" == target/release/tessera && -z "${NO_BUILD:-}" ]]; then
    cargo build --release --bin tessera >&2
fi

# Scene names → paths (a name is scenes/NAME.glb or scenes/NAME.gltf).
resolve() {
    local s
    for s in "$@"; do
        if [[ -f "$s" ]]; then echo "$s"
        elif [[ -f "scenes/$s.glb" ]]; then echo "scenes/$s.glb"
        elif [[ -f "scenes/$s.gltf" ]]; then echo "scenes/$s.gltf"
        elif [[ -f "scenes/$s" ]]; then echo "scenes/$s"
        else echo "benches/run.sh: no scene $s (skipped)" >&2
        fi
    done
}
join() { local IFS=,; echo "$*"; }

if [[ -n "${SCENES:-}" ]]; then
    mapfile -t speed < <(resolve ${SCENES//,/ })
else
    mapfile -t speed < <(ls scenes/*.glb scenes/*.gltf 2>/dev/null | sort)
fi
if [[ -n "${LARGE:-}" ]]; then
    if [[ ! -f "$LARGE/large.gltf" ]]; then
        cargo run --release -p tessera-scenes --bin gen-scenes -- --large "$LARGE" >&2
    fi
    speed+=("$LARGE/large.gltf")
fi
mapfile -t quality < <(resolve ${QSCENES//,/ })

if [[ -z "${SKIP_SPEED:-}" ]]; then
    echo "== speed: ${#speed[@]} scenes, ${W}x${H}, $SPP spp, $BOUNCES bounces" >&2
    # Scene by scene, Tessera then Cycles, so that both see the same load on the
    # machine; report.py merges the per-scene files. `|| true`: a scene that fails is
    # recorded with its error and the others still run.
    rm -rf "$WORK/speed"
    mkdir -p "$WORK/speed"
    for sc in "${speed[@]}"; do
        stem="$(basename "${sc%.*}")"
        "$TESSERA" bench render --scenes "$sc" --width "$W" --height "$H" --spp "$SPP" \
            --max-bounces "$BOUNCES" --tile "$TILE" --images "$WORK/tessera-$SPP" \
            --out "$WORK/speed/tessera-$stem.json" >&2 || true
        "$BPY" benches/cycles.py --scenes "$sc" --width "$W" --height "$H" --spp "$SPP" \
            --max-bounces "$BOUNCES" --images "$WORK/cycles-$SPP" \
            --out "$WORK/speed/cycles-$stem.json" >> "$WORK/cycles-speed.log" 2>&1 || true
        grep -h "^cycles: $stem" "$WORK/cycles-speed.log" | tail -1 >&2 || true
        if [[ -f "$WORK/cycles-$SPP/$stem.exr" && -f "$WORK/tessera-$SPP/$stem.exr" ]]; then
            "$TESSERA" compare "$WORK/cycles-$SPP/$stem.exr" "$WORK/tessera-$SPP/$stem.exr" \
                --exposure-match --json > "$WORK/speed/compare-$stem.json" || true
        fi
    done
    python3 benches/report.py --merge --work "$WORK" --results "$RESULTS"
fi

if [[ -z "${SKIP_QUALITY:-}" && ${#quality[@]} -gt 0 ]]; then
    echo "== quality: ${quality[*]}, ${W}x${H}, $QSPP spp, $BOUNCES bounces" >&2
    rm -f "$WORK"/compare-*.json
    "$TESSERA" bench render --scenes "$(join "${quality[@]}")" --width "$W" --height "$H" \
        --spp "$QSPP" --max-bounces "$BOUNCES" --tile 0 --images "$WORK/tessera-$QSPP" \
        --out "$WORK/tessera-quality.json" >&2 || true
    "$BPY" benches/cycles.py --scenes "$(join "${quality[@]}")" --width "$W" --height "$H" \
        --spp "$QSPP" --max-bounces "$BOUNCES" --images "$WORK/cycles-$QSPP" \
        --out "$WORK/cycles-quality.json" > "$WORK/cycles-quality.log" 2>&1 || true
    for q in "${quality[@]}"; do
        stem="$(basename "${q%.*}")"
        a="$WORK/cycles-$QSPP/$stem.exr"
        b="$WORK/tessera-$QSPP/$stem.exr"
        if [[ -f "$a" && -f "$b" ]]; then
            # A = Cycles (the reference), B = Tessera scaled to Cycles' mean.
            "$TESSERA" compare "$a" "$b" --exposure-match --json \
                --error-map "$WORK/flip-$stem.png" > "$WORK/compare-$stem.json"
        fi
    done
fi

python3 benches/report.py --work "$WORK" --results "$RESULTS" --qspp "$QSPP"
