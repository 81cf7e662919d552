#!/usr/bin/env bash
# Package the Blender add-on (addons/blender/tessera_farm) as an installable extension zip:
# `scripts/blender-addon.sh [OUT_DIR]` (default target/blender) writes
# OUT_DIR/tessera_farm-VERSION.zip. With Blender on PATH it runs
# `blender --command extension build` (which also validates the manifest); without, Python's
# zipfile writes the same layout: the add-on's files at the zip's root, no caches.
set -euo pipefail
cd "$(dirname "$0")/.."
src=addons/blender/tessera_farm
out=${1:-target/blender}
mkdir -p "$out"
version=$(sed -n 's/^version = "\(.*\)"$/\1/p' "$src/blender_manifest.toml")
[ -n "$version" ] || { echo "no version in $src/blender_manifest.toml" >&2; exit 1; }
zip="$out/tessera_farm-$version.zip"
rm -f "$zip"
if command -v blender >/dev/null; then
  blender --background --factory-startup --command extension build \
    --source-dir "$src" --output-filepath "$zip"
else
  python3 - "$src" "$zip" <<'PY'
import os, sys, zipfile
src, dst = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(dst, "w", zipfile.ZIP_DEFLATED) as z:
    for root, dirs, files in os.walk(src):
        dirs[:] = sorted(d for d in dirs if d != "__pycache__")
        for name in sorted(files):
            if name.endswith(".pyc"):
                continue
            path = os.path.join(root, name)
            z.write(path, os.path.relpath(path, src))
PY
fi
echo "$zip"
