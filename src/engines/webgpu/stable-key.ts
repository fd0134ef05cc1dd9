// Stable serialisation of a kernel's typed options object: the pipeline cache key. Two option
// objects that mean the same kernel give the same key whatever order their fields were written
// in; fields set to undefined are left out, as if absent. Numbers keep their exact value
// (Infinity and -0 included), so a key never merges two kernels that differ.

export function stableKey(value: unknown): string {
  if (value === undefined) return 'undefined';
  if (value === null) return 'null';
  switch (typeof value) {
    case 'number':
      if (Object.is(value, -0)) return '-0';
      return Number.isFinite(value) ? String(value) : String(value); // 'Infinity', '-Infinity', 'NaN'
    case 'boolean':
      return value ? 'true' : 'false';
    case 'string':
      return JSON.stringify(value);
    case 'bigint':
      return `${value}n`;
    case 'object': {
      if (Array.isArray(value)) return `[${value.map(stableKey).join(',')}]`;
      if (ArrayBuffer.isView(value)) return `[${Array.from(value as unknown as ArrayLike<number>, stableKey).join(',')}]`;
      const entries = Object.keys(value as object)
        .filter((k) => (value as Record<string, unknown>)[k] !== undefined)
        .sort()
        .map((k) => `${JSON.stringify(k)}:${stableKey((value as Record<string, unknown>)[k])}`);
      return `{${entries.join(',')}}`;
    }
    default:
      throw new TypeError(`stableKey: cannot serialise a ${typeof value} (kernel options must be plain data)`);
  }
}
