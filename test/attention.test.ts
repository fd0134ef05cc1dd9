// The backend-independent correctness suite: every case of SUITE on every backend present, with
// fresh seeded inputs, against the float64 reference.
import { describe, it } from 'vitest';
import { SUITE, caseName } from '../dist/testing/index.js';
import { backendsHere, checkCase } from './helpers.js';

const backends = await backendsHere();
const seed = Number(process.env.FUSEDATTN_SEED ?? 1234);

for (const backend of backends) {
  if (backend.skip) console.warn(`\n!!! SKIPPING the ${backend.name} attention suite: ${backend.skip}\n`);
  describe.skipIf(backend.skip !== undefined)(`attention on ${backend.name}`, () => {
    SUITE.forEach((c, index) => {
      it(caseName(c), async () => {
        await checkCase(backend.name, c, seed + index);
      });
    });
  });
}
