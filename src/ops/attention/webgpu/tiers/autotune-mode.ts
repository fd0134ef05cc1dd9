// The autotune mode switch, kept apart from the tuner so that importing it (the package entry
// point does) loads no GPU code. Modes are described in autotune.ts.
export type AutotuneMode = 'cached' | 'on' | 'background' | 'force' | 'off';
export const AUTOTUNE_MODES: readonly AutotuneMode[] = ['cached', 'on', 'background', 'force', 'off'];

let modeOverride: AutotuneMode | undefined;

/** Sets the autotune mode for this process (overrides FUSEDATTN_AUTOTUNE); undefined = back to the env. */
export function setAutotuneMode(mode: AutotuneMode | undefined): void {
  if (mode !== undefined && !AUTOTUNE_MODES.includes(mode)) {
    throw new Error(`autotune mode must be one of ${AUTOTUNE_MODES.join(', ')}, got ${String(mode)}`);
  }
  modeOverride = mode;
}

/** The mode in force: setAutotuneMode's, else FUSEDATTN_AUTOTUNE, else 'cached'. */
export function autotuneMode(): AutotuneMode {
  if (modeOverride) return modeOverride;
  const env = globalThis.process?.env?.FUSEDATTN_AUTOTUNE?.trim().toLowerCase() as AutotuneMode | undefined;
  return env && AUTOTUNE_MODES.includes(env) ? env : 'cached';
}
