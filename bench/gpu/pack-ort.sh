#!/usr/bin/env bash
# Packs onnxruntime-node (linux-x64 only, libonnxruntime.so.1 xz-compressed: 45 MB -> ~10 MB) into
# DEST/node_modules for the GPU machine, which cannot reach the npm registry. onnxruntime-node is
# kept out of the package's dependencies: only this benchmark needs it.
# Usage: bash bench/gpu/pack-ort.sh DEST      (then on the GPU machine: bash DEST/unpack-ort.sh)
set -euo pipefail
dest=${1:?destination folder}
tmp=$(mktemp -d)
(cd "$tmp" && echo '{}' > package.json && ONNXRUNTIME_NODE_INSTALL=skip npm install --no-audit --no-fund --ignore-scripts onnxruntime-node@1.30.0 >/dev/null)
mkdir -p "$dest/node_modules/onnxruntime-node/bin/napi-v6/linux/x64"
cp -r "$tmp/node_modules/onnxruntime-common" "$dest/node_modules/"
src=$tmp/node_modules/onnxruntime-node
cp -r "$src/package.json" "$src/dist" "$dest/node_modules/onnxruntime-node/"
cp "$src/bin/napi-v6/linux/x64/onnxruntime_binding.node" "$dest/node_modules/onnxruntime-node/bin/napi-v6/linux/x64/"
xz -T0 -6 -c "$src/bin/napi-v6/linux/x64/libonnxruntime.so.1" > "$dest/libonnxruntime.so.1.xz"
cat > "$dest/unpack-ort.sh" <<'EOS'
d=$(dirname "${BASH_SOURCE[0]}")
lib=$d/node_modules/onnxruntime-node/bin/napi-v6/linux/x64/libonnxruntime.so.1
[[ -f $lib ]] || xz -dc "$d/libonnxruntime.so.1.xz" > "$lib"
EOS
rm -rf "$tmp"
du -sh "$dest"
