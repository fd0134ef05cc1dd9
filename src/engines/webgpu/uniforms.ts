// Uniform buffer layouts declared once in TypeScript: the same field list gives the WGSL struct
// and the function that packs values into bytes, so the two can never disagree. Offsets follow
// WGSL's uniform address space rules (scalars align to 4, vec2 to 8, vec3/vec4 to 16; struct size
// rounded up to 16).

export type UniformFieldType = 'u32' | 'i32' | 'f32' | 'vec2u' | 'vec2i' | 'vec2f' | 'vec4u' | 'vec4i' | 'vec4f';

const FIELD_INFO: Record<UniformFieldType, { size: number; align: number; components: number; scalar: 'u32' | 'i32' | 'f32'; wgsl: string }> = {
  u32: { size: 4, align: 4, components: 1, scalar: 'u32', wgsl: 'u32' },
  i32: { size: 4, align: 4, components: 1, scalar: 'i32', wgsl: 'i32' },
  f32: { size: 4, align: 4, components: 1, scalar: 'f32', wgsl: 'f32' },
  vec2u: { size: 8, align: 8, components: 2, scalar: 'u32', wgsl: 'vec2<u32>' },
  vec2i: { size: 8, align: 8, components: 2, scalar: 'i32', wgsl: 'vec2<i32>' },
  vec2f: { size: 8, align: 8, components: 2, scalar: 'f32', wgsl: 'vec2<f32>' },
  vec4u: { size: 16, align: 16, components: 4, scalar: 'u32', wgsl: 'vec4<u32>' },
  vec4i: { size: 16, align: 16, components: 4, scalar: 'i32', wgsl: 'vec4<i32>' },
  vec4f: { size: 16, align: 16, components: 4, scalar: 'f32', wgsl: 'vec4<f32>' },
};

export type UniformFields = Readonly<Record<string, UniformFieldType>>;

/** Values for every field: a number for scalars, an array of numbers for vectors. */
export type UniformValues<F extends UniformFields> = { [K in keyof F]: number | readonly number[] };

export class UniformLayout<F extends UniformFields> {
  readonly structName: string;
  readonly fields: F;
  /** Byte size of the struct (a multiple of 16). */
  readonly byteSize: number;
  private readonly offsets: ReadonlyMap<string, number>;

  constructor(structName: string, fields: F) {
    this.structName = structName;
    this.fields = fields;
    const offsets = new Map<string, number>();
    let offset = 0;
    for (const [name, type] of Object.entries(fields)) {
      const info = FIELD_INFO[type];
      offset = Math.ceil(offset / info.align) * info.align;
      offsets.set(name, offset);
      offset += info.size;
    }
    this.offsets = offsets;
    this.byteSize = Math.max(16, Math.ceil(offset / 16) * 16);
  }

  /** The WGSL struct declaration. */
  wgsl(): string {
    const lines = Object.entries(this.fields).map(([name, type]) => `  ${name}: ${FIELD_INFO[type].wgsl},`);
    return `struct ${this.structName} {\n${lines.join('\n')}\n}`;
  }

  /** Packs `values` into a new ArrayBuffer laid out as the WGSL struct. Integers are range-checked. */
  pack(values: UniformValues<F>): ArrayBuffer {
    const bytes = new ArrayBuffer(this.byteSize);
    const view = new DataView(bytes);
    for (const [name, type] of Object.entries(this.fields)) {
      const info = FIELD_INFO[type];
      const raw = values[name as keyof F] as number | readonly number[] | undefined;
      if (raw === undefined) throw new Error(`${this.structName}.${name}: no value given`);
      const list: readonly number[] = typeof raw === 'number' ? [raw] : raw;
      if (list.length !== info.components) {
        throw new Error(`${this.structName}.${name}: expected ${info.components} component(s), got ${list.length}`);
      }
      const base = this.offsets.get(name) as number;
      list.forEach((x, c) => {
        const at = base + 4 * c;
        if (info.scalar === 'f32') view.setFloat32(at, x, true);
        else if (info.scalar === 'u32') {
          if (!Number.isInteger(x) || x < 0 || x > 0xffffffff) throw new RangeError(`${this.structName}.${name}: ${x} is not a u32`);
          view.setUint32(at, x, true);
        } else {
          if (!Number.isInteger(x) || x < -0x80000000 || x > 0x7fffffff) throw new RangeError(`${this.structName}.${name}: ${x} is not an i32`);
          view.setInt32(at, x, true);
        }
      });
    }
    return bytes;
  }
}
