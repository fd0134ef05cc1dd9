// The key of a scope recording: a stable serialisation of the arguments the scoped function depends
// on. Numbers, strings and plain objects by value; GPU buffers, devices and other GPU objects by
// identity, and so are class instances (a buffer's contents may change between replays, that is
// the point; the buffer may not);
// Tensors by dtype, shape and where they live (GPU: buffer identity and offset; CPU: contents);
// typed arrays by contents (an FNV-1a hash over their bytes: per-call work proportional to their
// size, so pass large inputs as GPU tensors).
import { Tensor } from '../core/tensor.js';

const ids = new WeakMap<object, number>();
let nextId = 1;

/** A process-unique number for an object (the same object always gets the same number). */
export function identity(o: object): number {
  let id = ids.get(o);
  if (id === undefined) ids.set(o, (id = nextId++));
  return id;
}

function hashBytes(view: ArrayBufferView): string {
  const bytes = new Uint8Array(view.buffer, view.byteOffset, view.byteLength);
  let h = 0x811c9dc5;
  for (let i = 0; i < bytes.length; i++) {
    h ^= bytes[i];
    h = Math.imul(h, 0x01000193);
  }
  return `${bytes.length}:${(h >>> 0).toString(16)}`;
}

/** GPU objects and class instances (a block, a runtime) count by identity, plain objects by value. */
function byIdentity(value: object): boolean {
  const proto = Object.getPrototypeOf(value);
  return proto !== Object.prototype && proto !== null && !Array.isArray(value);
}

export function scopeKey(value: unknown): string {
  if (value === undefined) return 'u';
  if (value === null) return 'n';
  switch (typeof value) {
    case 'number': return Object.is(value, -0) ? '-0' : String(value);
    case 'boolean': return value ? 't' : 'f';
    case 'string': return JSON.stringify(value);
    case 'bigint': return `${value}n`;
    case 'function': return `fn#${identity(value)}`;
    case 'object': {
      if (value instanceof Tensor) {
        const where = value.gpu ? `gpu#${identity(value.gpu.buffer)}+${value.gpu.byteOffset}` : `cpu:${hashBytes(value.data as ArrayBufferView)}`;
        return `T(${value.dtype}[${value.shape.join(',')}]${where})`;
      }
      if (ArrayBuffer.isView(value)) return `A(${value.constructor.name}:${hashBytes(value)})`;
      if (byIdentity(value)) return `#${identity(value)}`;
      if (Array.isArray(value)) return `[${value.map(scopeKey).join(',')}]`;
      const entries = Object.keys(value)
        .filter((k) => (value as Record<string, unknown>)[k] !== undefined)
        .sort()
        .map((k) => `${JSON.stringify(k)}:${scopeKey((value as Record<string, unknown>)[k])}`);
      return `{${entries.join(',')}}`;
    }
    default:
      return String(value);
  }
}
