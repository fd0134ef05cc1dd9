// Writes the tiny random test model (config.json + model.safetensors) into public/models/tiny/,
// which Vite serves beside the page (and copies into a build). Seeded: the same files every time.
import { fileURLToPath } from 'node:url';
import { configFrom, randomWeights, tinyConfigJson, writeModelFolder } from '../dist/model/index.js';

export async function makeTinyModel(dir = fileURLToPath(new URL('./public/models/tiny', import.meta.url))) {
  const json = tinyConfigJson();
  await writeModelFolder(dir, json, randomWeights(configFrom(json), 11));
  return dir;
}

if (process.argv[1] === fileURLToPath(import.meta.url)) console.log(`wrote ${await makeTinyModel()}`);
