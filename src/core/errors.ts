// Typed errors. Every check in fusedattn throws one of these before any work starts, with a message
// that names the argument, what was expected and what was received, so a caller (or the CLI, which
// prints `error.message` alone) can fix the call without reading our source.

/** Base class: `instanceof FusedAttnError` catches everything this library throws on purpose. */
export class FusedAttnError extends Error {
  /** The argument or option at fault, e.g. `"key"` or `"options.window"`. */
  readonly argument: string;
  constructor(argument: string, message: string) {
    super(message);
    this.name = new.target.name;
    this.argument = argument;
  }
}

/** A tensor has the wrong rank, or a dimension disagrees with another input. */
export class ShapeError extends FusedAttnError {}

/** A tensor's element type is not one the operation accepts. */
export class DTypeError extends FusedAttnError {}

/** An option value is invalid on its own (NaN scale, negative window, non-finite input...). */
export class ValueError extends FusedAttnError {}

/** The request is well formed but this backend, tier or build cannot do it. */
export class UnsupportedError extends FusedAttnError {}

/** The GPU could not be reached, or reported an error (lost device, validation, out of memory). */
export class DeviceError extends FusedAttnError {}

/** Formats a value for an error message: arrays as [a, b], strings quoted, the rest as is. */
export function show(value: unknown): string {
  if (Array.isArray(value) || ArrayBuffer.isView(value)) {
    return `[${Array.from(value as ArrayLike<unknown>, show).join(', ')}]`;
  }
  if (typeof value === 'string') return JSON.stringify(value);
  if (value === undefined) return 'undefined';
  if (value === null) return 'null';
  if (typeof value === 'object') return (value as object).constructor?.name ?? 'object';
  return String(value);
}
