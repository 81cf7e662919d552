#!/usr/bin/env bash
# Pack, here, what benches/gpu.sh needs on the GPU machine. That machine (the `device`
# tool's, DEVELOPERS.md) reaches no package registry and has no Rust toolchain, and its
# image may lack the Vulkan loader and has no lavapipe for the cross-class calibration.
# So this writes into .gpu/ (ignored by git; the device call carries it):
#   tessera.xz      a stripped release build of this checkout's `tessera`
#   vulkan.tar.xz   vulkan/: the Vulkan loader, this machine's lavapipe (Mesa >= 25), every
#                   library they load but the C and C++ runtimes, and lvp_icd.json (the
#                   driver manifest, its library path filled in where gpu.sh unpacks it)
#   PACKED          what was packed: commit, Mesa version, sizes
# and checks that the working tree plus .gpu/ fit the device tool's 64 MiB transfer.
# Then, with the device tool: run(command="bash benches/gpu.sh 2>&1 | tee $OUT/gpu-log.txt",
# carry=[".gpu"], timeout_s=540).
#
# Usage (from the repository root, on a Debian machine set up by scripts/lavapipe.sh):
#   bash benches/gpu-pack.sh
set -euo pipefail
cd "$(dirname "$0")/.."
PACK=.gpu
LIMIT=$((64 << 20))

for tool in strip xz ldd git; do
    command -v "$tool" >/dev/null || { echo "gpu-pack: $tool is missing" >&2; exit 1; }
done
exclude=$(git rev-parse --git-path info/exclude)
mkdir -p "$(dirname "$exclude")"
grep -qxF "/$PACK/" "$exclude" 2>/dev/null || echo "/$PACK/" >>"$exclude"

cargo build --release --bin tessera >&2
rm -rf "$PACK"
mkdir -p "$PACK"
strip -o "$PACK/tessera" target/release/tessera
xz -T0 -6 "$PACK/tessera"

# lavapipe: its driver manifest names the library; the loader by its soname.
icd=$(ls /usr/share/vulkan/icd.d/lvp_icd*.json 2>/dev/null | sed -n 1p || true)
[[ -n "$icd" ]] || { echo "gpu-pack: no lavapipe driver manifest in /usr/share/vulkan/icd.d (run scripts/lavapipe.sh)" >&2; exit 1; }
lvp=$(sed -n 's/.*"library_path": *"\([^"]*\)".*/\1/p' "$icd")
# Mesa 25 names the library by its file name alone, for the dynamic linker to find.
if [[ "$lvp" != /* ]]; then
    lvp=$(ldconfig -p | awk -v name="$lvp" '$1 == name && /x86-64/ && !found {print $NF; found = 1}')
fi
[[ -f "$lvp" ]] || { echo "gpu-pack: $icd names a lavapipe library that is not there" >&2; exit 1; }
loader=$(ldconfig -p | awk '/libvulkan\.so\.1 .*x86-64/ && !found {print $NF; found = 1}')
[[ -n "$loader" ]] || { echo "gpu-pack: no Vulkan loader (libvulkan.so.1)" >&2; exit 1; }
mesa=$(dpkg-query -W -f '${Version}' mesa-vulkan-drivers 2>/dev/null || echo unknown)

stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
mkdir "$stage/vulkan"
cp -L "$lvp" "$stage/vulkan/libvulkan_lvp.so"
cp -L "$loader" "$stage/vulkan/libvulkan.so.1"
# Every library lavapipe loads, by soname, except glibc's and the C++ runtime, which the
# GPU machine has in versions at least as new.
ldd "$lvp" | awk '$2 == "=>" && $3 ~ /^\// {print $1, $3}' | while read -r soname path; do
    case "$soname" in
        libc.so.*|libm.so.*|libdl.so.*|libpthread.so.*|librt.so.*|ld-linux*|libstdc++.so.*|libgcc_s.so.*) ;;
        *) cp -L "$path" "$stage/vulkan/$soname" ;;
    esac
done
sed 's#"library_path": *"[^"]*"#"library_path": "@DIR@/libvulkan_lvp.so"#' "$icd" >"$stage/vulkan/lvp_icd.json"
echo "$mesa" >"$stage/vulkan/MESA_VERSION"
tar -C "$stage" -cf - vulkan | xz -T0 -6 >"$PACK/vulkan.tar.xz"

{
    echo "commit $(git rev-parse HEAD)$(git diff --quiet HEAD -- . ':!benches/results' || echo ' (dirty)')"
    echo "packed $(date -u +%Y-%m-%dT%H:%M:%SZ) on $(uname -m)"
    echo "mesa-vulkan-drivers $mesa"
    ls -l "$PACK"
} >"$PACK/PACKED"

# What the device call sends: tracked files, untracked files git does not ignore, .gpu/.
tree=$(git ls-files -z --cached --others --exclude-standard | xargs -0 -r stat -c %s 2>/dev/null \
    | awk '{s += $1} END {print s + 0}')
packed=$(du -sb "$PACK" | cut -f1)
total=$((tree + packed))
echo "gpu-pack: working tree $((tree >> 20)) MiB + $PACK $((packed >> 20)) MiB = $((total >> 20)) MiB (the device tool takes at most 64)" >&2
if ((total > LIMIT)); then
    echo "gpu-pack: too large for the device tool's transfer" >&2
    exit 1
fi
echo "gpu-pack: ready; with the device tool: run(command=\"bash benches/gpu.sh 2>&1 | tee \$OUT/gpu-log.txt\", carry=[\"$PACK\"], timeout_s=540)" >&2
