// The autotune mode switch, kept apart from the tuner so that importing it (the package entry
// point does) loads no GPU code. Modes are described in autotune.ts; the setting itself lives in
// core/config.ts with the other process-wide options (configure({ autotune })).
import { type AutotuneMode, autotuneSetting, configure } from '../../../../core/config.js';

export { AUTOTUNE_MODES, type AutotuneMode } from '../../../../core/config.js';

/** Sets the autotune mode for this process (overrides FUSEDATTN_AUTOTUNE); undefined = back to the env. */
export function setAutotuneMode(mode: AutotuneMode | undefined): void {
  configure({ autotune: mode });
}

/** The mode in force: setAutotuneMode's / configure()'s, else FUSEDATTN_AUTOTUNE, else 'cached'. */
export function autotuneMode(): AutotuneMode {
  return autotuneSetting();
}
