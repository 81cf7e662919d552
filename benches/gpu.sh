#!/usr/bin/env bash
# The GPU check, as one command for the (rarely lent, 15-minute) GPU machine: check that
# wgpu picks the NVIDIA Vulkan adapter, time the renderer there (full frame and 64×64
# tiles, one at a time and in tasks of 16 as a node renders them; Cornell box at
# 1500×1500 and the sample scenes at the README table's settings), and run the
# cross-class calibration against lavapipe on the same machine.
#
# The device tool's machine reaches no package registry and has no Rust toolchain, so
# benches/gpu-pack.sh packs, beforehand and on a machine that has them, a stripped
# `tessera` and lavapipe with the Vulkan loader into .gpu/, which the call carries
# (DEVELOPERS.md):
#   bash benches/gpu-pack.sh          # here
#   run(command="bash benches/gpu.sh 2>&1 | tee $OUT/gpu-log.txt", carry=[".gpu"],
#       timeout_s=540)                # the device tool
# Without .gpu/ (a workstation with a GPU, Rust and its own Vulkan drivers) it builds
# `tessera` itself and calibrates against the system's lavapipe.
#
# Everything lands under benches/results/ (and $OUT/results when the device tool set
# $OUT, so that it comes back):
#   render-nvidia-<model>.json        tessera bench render, sample scenes, 256×256 64 spp
#   render-nvidia-<model>-1500.json   tessera bench render, cornell-box at 1500×1500
#   render-nvidia-<model>-1500-pixel.json  the same with a pixel per invocation (the old
#                                     layout), so occupancy's gain is a measured ratio
#   calibration-nvidia.json           tessera calibrate --classes default,<lavapipe>
#   gpu-adapter.txt                   what wgpu and nvidia-smi saw, and what was used
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

# Vulkan drivers the loader finds by itself; else the NVIDIA driver's own folder (where
# the device tool's machines keep it).
nvidia_icd=""
if ! ls /usr/share/vulkan/icd.d/nvidia_icd*.json /etc/vulkan/icd.d/nvidia_icd*.json >/dev/null 2>&1; then
    for f in /usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json /usr/local/nvidia/icd.d/nvidia_icd.json; do
        if [[ -f "$f" ]]; then
            nvidia_icd=$f
            break
        fi
    done
fi

if [[ -f .gpu/tessera.xz && -f .gpu/vulkan.tar.xz ]]; then
    # What benches/gpu-pack.sh packed: unpack it outside the checkout. xz may be missing
    # there; Python's lzma reads it too.
    GPU=/tmp/tessera-gpu
    rm -rf "$GPU"
    mkdir -p "$GPU"
    unpack() {
        if command -v xz >/dev/null; then
            xz -dc "$1"
        else
            python3 -c 'import lzma, shutil, sys; shutil.copyfileobj(lzma.open(sys.argv[1]), sys.stdout.buffer)' "$1"
        fi
    }
    step "unpack .gpu" 120 bash -c "$(declare -f unpack); unpack .gpu/tessera.xz > $GPU/tessera && chmod +x $GPU/tessera && unpack .gpu/vulkan.tar.xz | tar -C $GPU -xf -"
    sed "s#@DIR@#$GPU/vulkan#" "$GPU/vulkan/lvp_icd.json" >"$GPU/lvp_icd.json" 2>/dev/null || true
    # The packed loader and lavapipe's libraries; the NVIDIA driver's come from the system.
    export LD_LIBRARY_PATH="$GPU/vulkan${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
    TESSERA=$GPU/tessera
    lavapipe_class="vk-icd:$GPU/lvp_icd.json"
    cat .gpu/PACKED >&2 2>/dev/null || true
else
    # A fresh machine with a package registry may lack the Vulkan loader (the NVIDIA driver
    # brings its ICD).
    if ! ldconfig -p 2>/dev/null | grep -q libvulkan.so.1; then
        step "vulkan loader" 180 bash -c 'apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libvulkan1 mesa-vulkan-drivers'
    fi
    step build 420 cargo build --release --bin tessera
    TESSERA=target/release/tessera
    lavapipe_class=lavapipe
fi
# Only the NVIDIA driver for the GPU steps; the calibration's lavapipe class sets its own.
if [[ -n "$nvidia_icd" ]]; then
    export VK_ICD_FILENAMES=$nvidia_icd
fi

# Which adapter wgpu picks: it must be the NVIDIA GPU, not lavapipe.
{
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv 2>&1 || true
    echo "tessera: $TESSERA; VK_ICD_FILENAMES=${VK_ICD_FILENAMES:-} (NVIDIA driver manifest found: ${nvidia_icd:-none outside the loader folders})"
    echo "lavapipe class for the calibration: $lavapipe_class"
    # The packed tessera needs glibc 2.35 or newer, the packed lavapipe (its LLVM) 2.36.
    echo "glibc: $(ldd --version 2>&1 | head -n 1)"
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
step "calibrate against lavapipe" 240 "$TESSERA" calibrate --classes "default,$lavapipe_class" \
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
