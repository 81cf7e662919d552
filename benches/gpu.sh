#!/usr/bin/env bash
# The GPU check, as one command for the (rarely lent, 15-minute) GPU machine: build,
# check that wgpu picks the NVIDIA Vulkan adapter, time the renderer there (full frame
# and 64×64 tiles, one at a time and in tasks of 16 as a node renders them; Cornell box
# at 1500×1500 and the sample scenes at the README table's settings), and run the
# cross-class calibration against lavapipe on the same machine.
# Everything lands under benches/results/ (and $OUT/results when the device tool set
# $OUT, so that it comes back):
#   render-nvidia-<model>.json        tessera bench render, sample scenes, 256×256 64 spp
#   render-nvidia-<model>-1500.json   tessera bench render, cornell-box at 1500×1500
#   render-nvidia-<model>-1500-pixel.json  the same with a pixel per invocation (the old
#                                     layout), so occupancy's gain is a measured ratio
#   calibration-nvidia.json           tessera calibrate --classes default,lavapipe
#   gpu-adapter.txt                   what wgpu and nvidia-smi saw
# Each step is bounded so that a slow one cannot eat the whole lease; a failed step is
# reported and the others still run. Exit status: 0 when every step passed.
#
# Usage (from the repository root): bash benches/gpu.sh
set -uo pipefail
cd "$(dirname "$0")/.."
RESULTS=benches/results
mkdir -p "$RESULTS"
failed=()
step() {
    local name=$1 limit=$2
    shift 2
    echo "== $name (at most ${limit}s)" >&2
    if ! timeout "$limit" "$@"; then
        echo "== $name FAILED" >&2
        failed+=("$name")
    fi
}

# A fresh device machine may lack the Vulkan loader (the NVIDIA driver brings its ICD).
if ! ldconfig -p 2>/dev/null | grep -q libvulkan.so.1; then
    step "vulkan loader" 180 bash -c 'apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libvulkan1 mesa-vulkan-drivers'
fi
step build 420 cargo build --release --bin tessera
TESSERA=target/release/tessera

# Which adapter wgpu picks: it must be the NVIDIA GPU, not lavapipe.
{
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv 2>&1 || true
    echo
    "$TESSERA" render scenes/cornell-box.glb --width 64 --height 64 --spp 1 \
        -o /tmp/gpu-probe.png --proof /tmp/gpu-probe.proof.json 2>&1 | grep -i "adapter" || true
} | tee "$RESULTS/gpu-adapter.txt" >&2
if ! grep -qi "nvidia" "$RESULTS/gpu-adapter.txt" || grep -qi "^adapter:.*llvmpipe" "$RESULTS/gpu-adapter.txt"; then
    echo "== wgpu did not pick an NVIDIA adapter (see $RESULTS/gpu-adapter.txt)" >&2
    failed+=("adapter")
fi
model=$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -n 1 \
    | tr 'A-Z' 'a-z' | sed 's/nvidia//; s/[^a-z0-9]\+/-/g; s/^-//; s/-$//')
device="nvidia-${model:-gpu}"

step "bench render (sample scenes)" 240 "$TESSERA" bench render --device "$device" \
    --width 256 --height 256 --spp 64 --max-bounces 8 --tile 64 --repeat 2 \
    --out "$RESULTS/render-$device.json"
step "bench render (cornell-box 1500x1500)" 180 "$TESSERA" bench render --device "$device" \
    --scenes cornell-box --width 1500 --height 1500 --spp 64 --max-bounces 8 --tile 64 \
    --repeat 2 --out "$RESULTS/render-$device-1500.json"
step "bench render (cornell-box 1500x1500, a pixel per invocation)" 180 "$TESSERA" bench render \
    --device "$device" --scenes cornell-box --width 1500 --height 1500 --spp 64 --max-bounces 8 \
    --tile 64 --parallelism pixel --out "$RESULTS/render-$device-1500-pixel.json"
step "calibrate against lavapipe" 240 "$TESSERA" calibrate --classes default,lavapipe \
    --out "$RESULTS/calibration-nvidia.json"

if [[ -n "${OUT:-}" ]]; then
    mkdir -p "$OUT/results"
    cp "$RESULTS"/render-nvidia-* "$RESULTS"/calibration-nvidia.json "$RESULTS"/gpu-adapter.txt \
        "$OUT/results/" 2>/dev/null || true
fi
if ((${#failed[@]})); then
    echo "failed: ${failed[*]}" >&2
    exit 1
fi
echo "all GPU steps passed; results in $RESULTS" >&2
