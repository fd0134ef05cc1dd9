// PagedKVCache: a pool of fixed-size pages per layer and the bookkeeping that maps sequences onto
// them (vLLM's block pool / FlashInfer's paged KV, here with the allocator apart from the kernels,
// which only read a block table).
//   - a free list of pages; a sequence holds a list of pages and a length;
//   - reserve(seqs, n) gives each sequence pages for n more positions before a step (the attention
//     kernel then stores the new rows itself: attentionDecode's `append`); advance() counts them;
//   - fork(seq) shares every page of a sequence with a new one (parallel sampling, beam search):
//     pages are reference-counted, and the first write into a shared, partly filled page copies it
//     (copy-on-write; full shared pages are never written again);
//   - view(seqs, layer) is what attentionDecode() reads: the layer's pools, the block table and
//     lengths of those sequences. On WebGPU the table and lengths live in one GPU buffer that the
//     host rewrites only when they change (a host write, never a readback).
// All bookkeeping is host-side: no GPU data is read back on the hot path.
import { BYTES_PER_ELEMENT, type DType } from '../../core/dtype.js';
import { ValueError, show } from '../../core/errors.js';
import { Tensor, type TensorInput, toTensor } from '../../core/tensor.js';
import type { AttentionResult } from '../attention/backend.js';
import type { BackendChoice } from '../attention/options.js';
import { autoBackend } from '../attention/registry.js';
import type { GpuRuntime } from '../../engines/webgpu/runtime.js';
import type { CacheDType, DecodeCache, DecodeOptions } from './options.js';
import { attentionDecode } from './api.js';
import { storeRow } from './storage.js';

export interface PagedKVCacheOptions {
  /** Pages in each layer's pool. */
  numPages: number;
  /** Positions per page (vLLM's block size), e.g. 16. */
  pageSize: number;
  kvHeads: number;
  headDim: number;
  /** Value head dim (default headDim); with `shared`, the latent cache's value columns. */
  valueDim?: number;
  /** A shared latent cache (MLA): one pool per layer, values = its first valueDim columns. */
  shared?: boolean;
  /** Layers sharing the page table (default 1). */
  layers?: number;
  /** Storage dtype (default float16). */
  dtype?: CacheDType;
  /** Pool layout: 'HND' [pages, Nkv, P, D] (default) or 'NHD' [pages, P, Nkv, D]. */
  layout?: 'HND' | 'NHD';
  /** Most positions one sequence may hold (block-table width = ceil(maxLength / pageSize)); default: every page. */
  maxLength?: number;
  /** Most sequences one view() may list (default 64). */
  maxSequences?: number;
  backend?: BackendChoice;
  device?: GPUDevice;
}

interface Sequence {
  pages: number[];
  length: number;
}

export class PagedKVCache {
  readonly backend: 'cpu' | 'webgpu';
  readonly numPages: number;
  readonly pageSize: number;
  readonly kvHeads: number;
  readonly headDim: number;
  readonly valueDim: number;
  readonly shared: boolean;
  readonly layers: number;
  readonly dtype: CacheDType;
  readonly layout: 'HND' | 'NHD';
  /** Block-table width. */
  readonly maxPages: number;
  readonly maxSequences: number;
  /** Per layer: the page pools (values undefined when shared) and int8 scales. */
  readonly keys: readonly Tensor[];
  readonly values: readonly (Tensor | undefined)[];
  readonly kScales: readonly (Tensor | undefined)[];
  readonly vScales: readonly (Tensor | undefined)[];

  private readonly freeList: number[];
  private readonly refs: Int32Array;
  private readonly seqs = new Map<number, Sequence>();
  private nextId = 0;
  private readonly runtime: GpuRuntime | undefined;
  /**
   * WebGPU: u32 [0, lengths [maxSequences], block table [maxSequences, maxPages]]; word 0 stays 0
   * (the first position of a RoPE table the decode kernel reads by position: metaLayout()).
   */
  private readonly meta: GPUBuffer | undefined;
  private lastView: { key: string; lengths: Tensor; table: Tensor } | undefined;
  private disposed = false;

  private constructor(o: Required<Omit<PagedKVCacheOptions, 'backend' | 'device'>>, backend: 'cpu' | 'webgpu', runtime: GpuRuntime | undefined) {
    this.backend = backend;
    this.numPages = o.numPages;
    this.pageSize = o.pageSize;
    this.kvHeads = o.kvHeads;
    this.headDim = o.headDim;
    this.valueDim = o.valueDim;
    this.shared = o.shared;
    this.layers = o.layers;
    this.dtype = o.dtype;
    this.layout = o.layout;
    this.maxPages = Math.ceil(o.maxLength / o.pageSize);
    this.maxSequences = o.maxSequences;
    this.runtime = runtime;
    this.freeList = Array.from({ length: o.numPages }, (_, i) => o.numPages - 1 - i);
    this.refs = new Int32Array(o.numPages);
    const shape = (dim: number) => (o.layout === 'HND' ? [o.numPages, o.kvHeads, o.pageSize, dim] : [o.numPages, o.pageSize, o.kvHeads, dim]);
    const scaleShape = shape(1).slice(0, 3);
    const int8 = o.dtype === 'int8';
    const make = (dims: number[], dtype: DType, label: string): Tensor => {
      const n = dims.reduce((a, b) => a * b, 1);
      if (runtime) {
        const buffer = runtime.createBuffer(Math.max(4, Math.ceil((n * BYTES_PER_ELEMENT[dtype]) / 4) * 4), label);
        return Tensor.fromGpuBuffer({ device: runtime.device, buffer, byteOffset: 0 }, dims, dtype);
      }
      const data = dtype === 'float32' ? new Float32Array(n) : dtype === 'int8' ? new Int8Array(n) : new Uint16Array(n);
      return Tensor.fromData(data, dims, dtype);
    };
    const layers = Array.from({ length: o.layers }, (_, l) => l);
    this.keys = layers.map((l) => make(shape(o.headDim), o.dtype, `paged keys ${l}`));
    this.values = layers.map((l) => (o.shared ? undefined : make(shape(o.valueDim), o.dtype, `paged values ${l}`)));
    this.kScales = layers.map((l) => (int8 ? make(scaleShape, 'float32', `paged key scales ${l}`) : undefined));
    this.vScales = layers.map((l) => (int8 && !o.shared ? make(scaleShape, 'float32', `paged value scales ${l}`) : undefined));
    this.meta = runtime ? runtime.createBuffer(4 * (1 + o.maxSequences * (1 + this.maxPages)), 'paged block table') : undefined;
  }

  /** Allocates the pools on the backend ('auto': WebGPU on a hardware adapter or a passed device, else the CPU). */
  static async create(options: PagedKVCacheOptions): Promise<PagedKVCache> {
    if (options === null || typeof options !== 'object') throw new ValueError('options', `PagedKVCache options must be an object, got ${show(options)}`);
    const int = (name: keyof PagedKVCacheOptions, value: unknown, min = 1) => {
      if (typeof value !== 'number' || !Number.isInteger(value) || value < min) throw new ValueError(`options.${name}`, `options.${name} must be an integer >= ${min}, got ${show(value)}`);
      return value;
    };
    const headDim = int('headDim', options.headDim);
    const shared = options.shared ?? false;
    const valueDim = int('valueDim', options.valueDim ?? headDim);
    if (shared && valueDim > headDim) throw new ValueError('options.valueDim', `a shared latent cache needs valueDim <= headDim (${headDim}), got ${valueDim}`);
    const dtype = options.dtype ?? 'float16';
    if (!['float32', 'float16', 'bfloat16', 'int8'].includes(dtype)) throw new ValueError('options.dtype', `options.dtype must be "float32", "float16", "bfloat16" or "int8", got ${show(dtype)}`);
    const layout = options.layout ?? 'HND';
    if (layout !== 'HND' && layout !== 'NHD') throw new ValueError('options.layout', `options.layout must be "HND" or "NHD", got ${show(layout)}`);
    const numPages = int('numPages', options.numPages);
    const pageSize = int('pageSize', options.pageSize);
    const resolved = {
      numPages, pageSize, kvHeads: int('kvHeads', options.kvHeads), headDim, valueDim, shared, dtype, layout,
      layers: int('layers', options.layers ?? 1),
      maxLength: int('maxLength', options.maxLength ?? numPages * pageSize),
      maxSequences: int('maxSequences', options.maxSequences ?? 64),
    };
    const choice = options.backend ?? 'auto';
    if (!['cpu', 'webgpu', 'auto'].includes(choice)) throw new ValueError('options.backend', `options.backend must be "cpu", "webgpu" or "auto", got ${show(choice)}`);
    const backend = choice === 'auto' ? await autoBackend({ device: options.device }) : choice;
    let runtime: GpuRuntime | undefined;
    if (backend === 'webgpu') runtime = await (await import('../../engines/webgpu/runtime.js')).getRuntime(options.device);
    return new PagedKVCache(resolved, backend, runtime);
  }

  /** Pages not held by any sequence. */
  get freePages(): number {
    return this.freeList.length;
  }

  /** Bytes of all layers' pools (and scales). */
  get bytes(): number {
    const sum = (ts: readonly (Tensor | undefined)[]) => ts.reduce((a, t) => a + (t ? t.size * BYTES_PER_ELEMENT[t.dtype] : 0), 0);
    return sum(this.keys) + sum(this.values) + sum(this.kScales) + sum(this.vScales);
  }

  /** Ids of the live sequences. */
  sequences(): number[] {
    return [...this.seqs.keys()];
  }

  /** A new, empty sequence. */
  addSequence(): number {
    this.alive();
    const id = this.nextId++;
    this.seqs.set(id, { pages: [], length: 0 });
    return id;
  }

  /** A new sequence sharing every page (and the length) of `seq`; its writes copy shared pages first. */
  fork(seq: number): number {
    const parent = this.get(seq);
    const id = this.nextId++;
    for (const p of parent.pages) this.refs[p]++;
    this.seqs.set(id, { pages: [...parent.pages], length: parent.length });
    return id;
  }

  /** Ends a sequence; its pages no other sequence holds go back to the free list. */
  free(seq: number): void {
    const s = this.get(seq);
    for (const p of s.pages) {
      if (--this.refs[p] === 0) this.freeList.push(p);
    }
    this.seqs.delete(seq);
    this.lastView = undefined;
  }

  /** Positions `seq` holds. */
  length(seq: number): number {
    return this.get(seq).length;
  }

  /** The pages of `seq`, in position order (for tests and debugging). */
  pagesOf(seq: number): readonly number[] {
    return [...this.get(seq).pages];
  }

  /** How many more positions all pages could hold, for a new sequence. */
  get capacity(): number {
    return this.maxPages * this.pageSize;
  }

  /**
   * Gives each sequence pages for `tokens` more positions (past its length): new pages from the
   * free list, and a private copy of a shared page that the next position falls into. Throws
   * ValueError, changing nothing, when the pool or a sequence's table is full.
   */
  reserve(seqs: readonly number[], tokens: number): void {
    if (!Number.isInteger(tokens) || tokens < 0) throw new ValueError('tokens', `tokens must be an integer >= 0, got ${show(tokens)}`);
    const P = this.pageSize;
    let wanted = 0;
    const plans = seqs.map((id) => {
      const s = this.get(id);
      const end = s.length + tokens;
      if (end > this.capacity) throw new ValueError('tokens', `sequence ${id} would hold ${end} positions, over the cache's ${this.capacity} per sequence (maxLength)`);
      const grow = Math.max(0, Math.ceil(end / P) - s.pages.length);
      const partial = s.length % P !== 0 && tokens > 0 ? Math.floor(s.length / P) : -1;
      const copy = partial >= 0 && this.refs[s.pages[partial]] > 1;
      wanted += grow + (copy ? 1 : 0);
      return { s, grow, copy, partial };
    });
    if (new Set(seqs).size !== seqs.length) throw new ValueError('seqs', `seqs lists a sequence twice: ${show(seqs)}`);
    if (wanted > this.freeList.length) throw new ValueError('tokens', `the cache needs ${wanted} more pages for this step but has ${this.freeList.length} free (of ${this.numPages}); free finished sequences or make the pool larger`);
    for (const { s, grow, copy, partial } of plans) {
      if (copy) {
        const old = s.pages[partial];
        const page = this.take();
        this.copyPage(old, page);
        this.refs[old]--;
        s.pages[partial] = page;
      }
      for (let i = 0; i < grow; i++) s.pages.push(this.take());
    }
    this.lastView = undefined;
  }

  /** Counts `tokens` more positions for each sequence (after every layer stored them). */
  advance(seqs: readonly number[], tokens: number): void {
    for (const id of seqs) {
      const s = this.get(id);
      if (s.length + tokens > s.pages.length * this.pageSize) throw new ValueError('tokens', `sequence ${id} has pages for ${s.pages.length * this.pageSize} positions, not ${s.length + tokens}; reserve() first`);
    }
    for (const id of seqs) this.get(id).length += tokens;
    this.lastView = undefined;
  }

  /**
   * What attentionDecode() reads for these sequences (in this order) at `layer`: the pools, the
   * block table [B, maxPages] and the lengths [B] (before the step's append).
   */
  view(seqs: readonly number[], layer = 0): DecodeCache & { lengths: Tensor; blockTable: Tensor } {
    this.alive();
    if (!Number.isInteger(layer) || layer < 0 || layer >= this.layers) throw new ValueError('layer', `layer must be an integer in 0..${this.layers - 1}, got ${show(layer)}`);
    if (seqs.length < 1 || seqs.length > this.maxSequences) throw new ValueError('seqs', `a view takes 1 to ${this.maxSequences} sequences (maxSequences), got ${seqs.length}`);
    const key = seqs.join(',');
    if (this.lastView?.key !== key) this.lastView = { key, ...this.tables(seqs) };
    const cache: DecodeCache & { lengths: Tensor; blockTable: Tensor } = {
      k: this.keys[layer], lengths: this.lastView.lengths, blockTable: this.lastView.table, layout: this.layout,
    };
    if (this.shared) cache.valueDim = this.valueDim;
    else cache.v = this.values[layer];
    if (this.dtype === 'int8') {
      cache.kScale = this.kScales[layer];
      if (!this.shared) cache.vScale = this.vScales[layer];
    }
    return cache;
  }

  /**
   * One decode step of a single-layer cache: reserves the positions, attends with the new rows
   * appended by the kernel (attentionDecode's `append`), and advances the lengths.
   */
  async decode(q: TensorInput, seqs: readonly number[], append: { k: TensorInput; v?: TensorInput }, options: Omit<DecodeOptions, 'append'> = {}): Promise<AttentionResult> {
    if (this.layers !== 1) throw new ValueError('layers', `decode() is for a one-layer cache; with ${this.layers} layers call reserve(), attentionDecode(q, view(seqs, layer), { append }) per layer, then advance()`);
    const tokens = toTensor(q, 'query', ['float32', 'float16']).shape[options.layout === 'BSND' ? 1 : 2];
    this.reserve(seqs, tokens);
    const result = await attentionDecode(q, this.view(seqs), { ...options, append, backend: this.backend, device: this.runtime?.device });
    this.advance(seqs, tokens);
    return result;
  }

  /**
   * Stores rows of new keys (and values) of one sequence at positions `at` .. (default: its length),
   * into layer `layer` (prefill). k [T, Nkv, Dq], v [T, Nkv, Dv], float32 or float16, where the
   * cache lives. The positions must be reserved; advance() counts them.
   */
  async write(seq: number, layer: number, k: TensorInput, v: TensorInput | undefined, at?: number): Promise<void> {
    const s = this.get(seq);
    const start = at ?? s.length;
    const kt = toTensor(k, 'k', ['float32', 'float16']);
    const vt = v === undefined ? undefined : toTensor(v, 'v', ['float32', 'float16']);
    const T = kt.shape[0];
    const expect = (t: Tensor, name: string, dim: number) => {
      if (t.rank !== 3 || t.shape[0] !== T || t.shape[1] !== this.kvHeads || t.shape[2] !== dim) throw new ValueError(name, `${name} must have shape [T, ${this.kvHeads}, ${dim}], got ${show(t.shape)}`);
    };
    expect(kt, 'k', this.headDim);
    if (this.shared !== (vt === undefined)) throw new ValueError('v', this.shared ? 'a shared latent cache takes keys only' : 'v is required (this cache has values)');
    if (vt) expect(vt, 'v', this.valueDim);
    if (start + T > s.pages.length * this.pageSize) throw new ValueError('at', `positions ${start}..${start + T - 1} of sequence ${seq} are not reserved (it has pages for ${s.pages.length * this.pageSize}); reserve() first`);
    if (this.runtime) {
      const { writePages } = await import('./webgpu/write.js');
      await writePages(this.runtime, this, s.pages, start, layer, kt, vt);
      return;
    }
    const P = this.pageSize;
    const strides = this.strides;
    const write = (pool: Tensor, scales: Tensor | undefined, rows: Float32Array, dim: number) => {
      for (let t = 0; t < T; t++) {
        const p = start + t;
        const page = s.pages[Math.floor(p / P)];
        for (let h = 0; h < this.kvHeads; h++) {
          const at = strides(dim);
          const sAt = strides(1);
          storeRow(this.dtype, pool.data!, page * at.page + h * at.head + (p % P) * at.pos, rows, (t * this.kvHeads + h) * dim, dim, scales?.data as Float32Array | undefined, page * sAt.page + h * sAt.head + (p % P) * sAt.pos);
        }
      }
    };
    write(this.keys[layer], this.kScales[layer], kt.toFloat32(), this.headDim);
    if (vt) write(this.values[layer]!, this.vScales[layer], vt.toFloat32(), this.valueDim);
  }

  /** Frees the pools (GPU buffers); the cache is unusable afterwards. */
  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    for (const t of [...this.keys, ...this.values, ...this.kScales, ...this.vScales]) t?.gpu?.buffer.destroy();
    this.meta?.destroy();
  }

  /**
   * WebGPU: the buffer view() writes (u32 words: a zero at 0, lengths at lengthsAt, the block table
   * at tableAt), for callers that bind it themselves (the runner's decode step).
   */
  metaLayout(): { buffer: GPUBuffer | undefined; zeroAt: number; lengthsAt: number; tableAt: number } {
    return { buffer: this.meta, zeroAt: 0, lengthsAt: 1, tableAt: 1 + this.maxSequences };
  }

  /** Element strides (page, head, position) of a pool with `dim` columns. */
  readonly strides = (dim: number) => {
    const { kvHeads: N, pageSize: P } = this;
    return this.layout === 'HND' ? { page: N * P * dim, head: P * dim, pos: dim } : { page: P * N * dim, head: dim, pos: N * dim };
  };

  private get(seq: number): Sequence {
    this.alive();
    const s = this.seqs.get(seq);
    if (!s) throw new ValueError('seq', `sequence ${show(seq)} is not in this cache (live: ${show(this.sequences())})`);
    return s;
  }

  private alive(): void {
    if (this.disposed) throw new ValueError('cache', 'this PagedKVCache was disposed');
  }

  private take(): number {
    const page = this.freeList.pop()!;
    this.refs[page] = 1;
    return page;
  }

  /** Copies every layer's page `from` into page `to` (GPU: copy commands; queued, not submitted). */
  private copyPage(from: number, to: number): void {
    const pools: Array<[Tensor | undefined, number]> = [];
    for (let l = 0; l < this.layers; l++) {
      pools.push([this.keys[l], this.headDim], [this.values[l], this.valueDim], [this.kScales[l], 1], [this.vScales[l], 1]);
    }
    for (const [pool, dim] of pools) {
      if (!pool) continue;
      const elements = this.strides(dim).page;
      const bytes = elements * BYTES_PER_ELEMENT[pool.dtype];
      if (pool.data) {
        (pool.data as Uint8Array).copyWithin(to * elements, from * elements, (from + 1) * elements);
        continue;
      }
      // a buffer cannot be copied into itself: through a pooled staging buffer
      const rt = this.runtime!;
      const staging = rt.acquire(bytes, 'intermediate', 'page copy');
      rt.copy(pool.gpu!.buffer, from * bytes, staging, 0, bytes, 'copy-on-write page');
      rt.copy(staging, 0, pool.gpu!.buffer, to * bytes, bytes, 'copy-on-write page');
      rt.release(staging);
    }
  }

  /** Lengths and block table of `seqs`, as tensors where the kernels read them. */
  private tables(seqs: readonly number[]): { lengths: Tensor; table: Tensor } {
    const B = seqs.length;
    const words = new Int32Array(B + B * this.maxPages).fill(-1);
    seqs.forEach((id, b) => {
      const s = this.get(id);
      words[b] = s.length;
      s.pages.forEach((page, p) => (words[B + b * this.maxPages + p] = page));
    });
    if (!this.runtime) {
      return { lengths: Tensor.fromData(words.slice(0, B), [B], 'int32'), table: Tensor.fromData(words.slice(B), [B, this.maxPages], 'int32') };
    }
    const rt = this.runtime;
    const { lengthsAt, tableAt } = this.metaLayout();
    rt.write(this.meta!, 4 * lengthsAt, words.subarray(0, B));
    rt.write(this.meta!, 4 * tableAt, words.subarray(B));
    const device = rt.device;
    return {
      lengths: Tensor.fromGpuBuffer({ device, buffer: this.meta!, byteOffset: 4 * lengthsAt }, [B], 'int32'),
      table: Tensor.fromGpuBuffer({ device, buffer: this.meta!, byteOffset: 4 * tableAt }, [B, this.maxPages], 'int32'),
    };
  }
}
