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

/** Arrays longer than this are summarised in messages: type, length and the first few values. */
const SHOWN_ELEMENTS = 8;
/** Strings longer than this are cut. */
const SHOWN_CHARS = 120;

/**
 * Formats a value for an error message: arrays as [a, b], strings quoted, the rest as is. Bounded
 * whatever the value: a long array shows as `Array(2000000) [1, 2, 3, ...]`, a long string is cut,
 * so a message never carries a whole input.
 */
export function show(value: unknown, depth = 0): string {
  if (Array.isArray(value) || (ArrayBuffer.isView(value) && !(value instanceof DataView))) {
    const list = value as ArrayLike<unknown>;
    const head = Array.from({ length: Math.min(list.length, SHOWN_ELEMENTS) }, (_, i) => (depth > 2 ? '…' : show(list[i], depth + 1)));
    if (list.length <= SHOWN_ELEMENTS) return `[${head.join(', ')}]`;
    const type = Array.isArray(value) ? 'Array' : (value as object).constructor?.name ?? 'TypedArray';
    return `${type}(${list.length}) [${head.join(', ')}, …]`;
  }
  if (typeof value === 'string') return JSON.stringify(value.length > SHOWN_CHARS ? `${value.slice(0, SHOWN_CHARS)}…` : value);
  if (value === undefined) return 'undefined';
  if (value === null) return 'null';
  if (typeof value === 'object') return (value as object).constructor?.name ?? 'object';
  return String(value);
}
