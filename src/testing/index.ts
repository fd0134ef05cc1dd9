// fusedattn/testing: the seeded cases, suite and pass rules our tests use, for anyone checking a backend.
export * from './cases.js';
export * from './compare.js';
export * from './random.js';
export { SUITE } from './suite.js';
export * from './check.js';
export * from './decode.js';
