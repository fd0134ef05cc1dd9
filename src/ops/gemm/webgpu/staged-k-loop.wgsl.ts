// The K loop of the tensor-core GEMMs that stage their operand tiles through registers
// (gemm-sgmat-tiled.wgsl.ts and gemm-tensorcore.wgsl.ts): the global loads of a K step go into
// registers (`fetch`), from there into workgroup memory (`store`), and the subgroup matrices read
// them there (`compute`). Two stages double-buffer workgroup memory, so the next step's loads are
// in flight during this step's math and one barrier per step suffices; one stage reuses a single
// buffer (half the memory) at two barriers per step, the next step's loads still issued before
// this step's math.

/** What the loop emits each phase with: WGSL lines appended through `add`. */
export interface StagedKLoop {
  add(line: string): void;
  /** Global loads of the K step starting at WGSL expression `k0` into the registers. */
  fetch(k0: string): void;
  /** The registers into workgroup stage `stage` (a WGSL u32 expression). */
  store(stage: string): void;
  /** The MMAs of one K step from workgroup stage `stage`. */
  compute(stage: string): void;
}

/**
 * The loop over `steps` K steps of TK (both declared by the caller, as are the registers): the
 * first step's loads, then per step the next step's loads ahead of this step's math.
 */
export function emitStagedKLoop(e: StagedKLoop, stages: 1 | 2): void {
  const { add, fetch, store, compute } = e;
  add('  {');
  fetch('0u');
  add('  }');
  if (stages === 2) {
    add('  {');
    store('0u');
    add('  }');
    add('  workgroupBarrier();');
    add('  for (var s = 0u; s < steps; s++) {');
    add('    let cur = s % 2u;');
    add('    let more = s + 1u < steps;');
    add('    if (more) {');
    add('      // the next step\'s global loads are in flight during this step\'s math');
    fetch('(s + 1u) * TK');
    add('    }');
    compute('cur');
    add('    if (more) {');
    add('      // the other stage was last read in step s - 1, before the barrier that ended it');
    store('(1u - cur)');
    add('    }');
    add('    workgroupBarrier();');
    add('  }');
  } else {
    add('  for (var s = 0u; s < steps; s++) {');
    add('    workgroupBarrier();   // the previous step\'s math is done with the tiles');
    store('0u');
    add('    workgroupBarrier();');
    add('    if (s + 1u < steps) {');
    fetch('(s + 1u) * TK');
    add('    }');
    compute('0u');
    add('  }');
  }
}
