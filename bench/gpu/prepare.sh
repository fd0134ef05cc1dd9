#!/usr/bin/env bash
# Prepares what a GPU run carries, from the repo root on a machine with the npm registry (here):
#   .gpu/          Node.js, the Vulkan/GL loaders and Dawn (../shared/gpu/pack)
#   dist/          the build
#   .gpuwork/nm.tar.xz   node_modules without webgpu (Dawn comes compressed in .gpu), typescript and
#                  the browser-test tools (vitest and its deps are what the GPU suite needs), compressed
#   .gpuwork/ort   onnxruntime-node for the ONNX Runtime anchor rows (pack-ort.sh)
# Then, with the device tool: carry [".gpu", "dist", ".gpuwork/nm.tar.xz", ".gpuwork/ort"] and a command
#   bash bench/gpu/device.sh <script> [args]      e.g. bash bench/gpu/device.sh bench/gpu/run.sh $OUT .gpuwork/ort
# (the working tree travels by itself, bench/ included). Usage: bash bench/gpu/prepare.sh [--no-ort]
set -euo pipefail
cd "$(git rev-parse --show-toplevel)"
pack=${FUSEDATTN_GPU_PACK:-../shared/gpu/pack}
[[ -d node_modules ]] || npm ci --no-audit --no-fund
npm run build >/dev/null
if [[ ! -f .gpu/env.sh || ! -f .gpu/dawn.node.xz ]]; then
  [[ -x $pack ]] || { echo "prepare: $pack not found (set FUSEDATTN_GPU_PACK)" >&2; exit 1; }
  bash "$pack"
fi
mkdir -p .gpuwork
rm -rf .gpuwork/nm
mkdir -p .gpuwork/nm
# everything but the packages the GPU run never loads: Dawn (packed in .gpu), the compiler, and the
# browser/bundler/runtime test tools (the GPU suite skips those tests without them)
# (webpack's own dependencies too: terser … caniuse-lite, 14 MiB)
skip='^(webpack|terser|caniuse-lite|electron-to-chromium|ajv|ajv-formats|ajv-keywords|enhanced-resolve|watchpack|browserslist|node-releases|baseline-browser-mapping|minimizer-webpack-plugin|schema-utils|webpack-sources|jest-worker)$|^(webgpu|typescript|puppeteer-core|playwright-core|chromium-bidi|devtools-protocol|deno|bun|esbuild|vite|rollup|lightningcss.*|zod)$'
skipScoped='^@(deno|oven|rolldown|esbuild|rollup|types|webassemblyjs|xtuc)/'
for p in node_modules/* node_modules/.bin node_modules/.package-lock.json; do
  [[ -e $p ]] || continue
  name=$(basename "$p")
  if [[ $name == @* && -d $p ]]; then
    for q in "$p"/*; do [[ "$name/$(basename "$q")" =~ $skipScoped ]] || { mkdir -p ".gpuwork/nm/$name"; cp -r "$q" ".gpuwork/nm/$name/"; }; done
  elif [[ ! $name =~ $skip ]]; then cp -r "$p" .gpuwork/nm/; fi
done
# vitest runs on its own vite (node_modules/vitest/node_modules/vite, copied with vitest), which
# needs rollup and esbuild at run time: keep them (linux-x64 binaries only)
for p in rollup esbuild @esbuild/linux-x64 @rollup/rollup-linux-x64-gnu; do
  [[ -e node_modules/$p ]] && { mkdir -p ".gpuwork/nm/$(dirname "$p")"; cp -r "node_modules/$p" ".gpuwork/nm/$(dirname "$p")/"; }
done
rm -rf .gpuwork/nm/@types .gpuwork/nm/esbuild/bin/esbuild
tar -C .gpuwork -cf - nm | xz -T0 -6 > .gpuwork/nm.tar.xz
rm -rf .gpuwork/nm
[[ ${1:-} == --no-ort || -f .gpuwork/ort/unpack-ort.sh ]] || bash bench/gpu/pack-ort.sh .gpuwork/ort
du -sh .gpu dist .gpuwork/nm.tar.xz .gpuwork/ort 2>/dev/null || true
total=$(( $(git ls-files -z | xargs -0 du -cb | tail -1 | cut -f1) + $(du -scb .gpu dist .gpuwork/nm.tar.xz .gpuwork/ort 2>/dev/null | tail -1 | cut -f1) ))
echo "prepare: about $(( total / 1048576 )) MiB travel (limit 64 MiB)"
