// Value parsers for commander options. A bad value throws commander's InvalidArgumentError, which
// commander turns into one line: "error: option '--heads <n>' argument 'x' is invalid. <reason>".
import { InvalidArgumentError } from 'commander';

export function positiveInt(value: string): number {
  const n = Number(value);
  if (!/^\+?\d+$/.test(value.trim()) || !Number.isSafeInteger(n) || n < 1) {
    throw new InvalidArgumentError('Expected a positive integer.');
  }
  return n;
}

export function integer(value: string): number {
  const n = Number(value);
  if (!/^[-+]?\d+$/.test(value.trim()) || !Number.isSafeInteger(n)) throw new InvalidArgumentError('Expected an integer.');
  return n;
}

/** A finite number ("0.125", "1e-3"); attention() still validates ranges (softcap >= 0...). */
export function finiteNumber(value: string): number {
  const n = Number(value);
  if (value.trim() === '' || !Number.isFinite(n)) throw new InvalidArgumentError('Expected a finite number.');
  return n;
}

/** "L,R" with integers >= -1 (-1 = unbounded), FlashAttention's window_size. */
export function windowPair(value: string): [number, number] {
  const parts = value.split(',').map((p) => p.trim());
  if (parts.length !== 2 || !parts.every((p) => /^-?\d+$/.test(p))) {
    throw new InvalidArgumentError('Expected LEFT,RIGHT: two integers >= -1 (-1 = unbounded), e.g. 128,0.');
  }
  return [Number(parts[0]), Number(parts[1])];
}
