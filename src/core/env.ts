// Every environment variable fusedattn reads goes through here, so that each one is validated the
// same way (a ValueError naming the variable, what it accepts and what it held) and so that a
// runtime which forbids reading the environment stays silent: Deno without --allow-env would
// throw, or prompt on a terminal, at `Deno.env.get`; there (and in a browser) every variable reads
// as unset and the defaults apply.
import { ValueError, show } from './errors.js';

interface DenoEnv {
  env: { get(name: string): string | undefined };
  permissions?: { querySync?(descriptor: { name: 'env'; variable: string }): { state: string } };
}

const denoGlobal = (globalThis as { Deno?: DenoEnv }).Deno;
const nodeProcess = (globalThis as { process?: { env?: Record<string, string | undefined> } }).process;

/** The variable's value, trimmed; undefined when unset, empty or unreadable here. */
export function readEnv(name: string): string | undefined {
  const trimmed = rawEnv(name)?.trim();
  return trimmed === '' ? undefined : trimmed;
}

/** Whether the variable is set at all, even to "" (GPU_DAWN_DISABLE_TOGGLES="" means "none"). */
export function envIsSet(name: string): boolean {
  return rawEnv(name) !== undefined;
}

function rawEnv(name: string): string | undefined {
  let value: string | undefined;
  try {
    if (denoGlobal) {
      // ask first: an unanswered permission would make Deno prompt on a terminal
      const state = denoGlobal.permissions?.querySync?.({ name: 'env', variable: name }).state;
      value = state === undefined || state === 'granted' ? denoGlobal.env.get(name) : undefined;
    } else {
      value = nodeProcess?.env?.[name];
    }
  } catch {
    value = undefined;
  }
  return value;
}

/** Sets a variable for this process when it is unset (EGL_PLATFORM for Dawn); silent where forbidden. */
export function defaultEnv(name: string, value: string): void {
  try {
    const env = nodeProcess?.env;
    if (env && env[name] === undefined) env[name] = value;
  } catch {
    // a runtime without write access to the environment: the native library reads its own default
  }
}

function invalid(name: string, expected: string, value: string): ValueError {
  const shown = show(value.length > 80 ? `${value.slice(0, 80)}…` : value);
  return new ValueError(name, `environment variable ${name} must be ${expected}, got ${shown}`);
}

/** One of `choices` (case-insensitive); undefined when unset. */
export function envChoice<T extends string>(name: string, choices: readonly T[]): T | undefined {
  const raw = readEnv(name);
  if (raw === undefined) return undefined;
  const value = raw.toLowerCase() as T;
  if (!choices.includes(value)) throw invalid(name, `one of ${choices.join(', ')}`, raw);
  return value;
}

/** A whole number in [min, max] written in decimal digits ("abc", "1.5", "-3", "1e3" are refused). */
export function envInt(name: string, min: number, max = Number.MAX_SAFE_INTEGER): number | undefined {
  const raw = readEnv(name);
  if (raw === undefined) return undefined;
  const n = Number(raw);
  if (!/^\+?\d+$/.test(raw) || !Number.isSafeInteger(n) || n < min || n > max) {
    const range = max === Number.MAX_SAFE_INTEGER ? `an integer >= ${min}` : `an integer in [${min}, ${max}]`;
    throw invalid(name, range, raw);
  }
  return n;
}

const TRUE = ['1', 'true', 'yes', 'on'];
const FALSE = ['0', 'false', 'no', 'off'];

/** A switch: 1/true/yes/on or 0/false/no/off; false when unset. */
export function envFlag(name: string): boolean {
  const raw = readEnv(name);
  if (raw === undefined) return false;
  const value = raw.toLowerCase();
  if (TRUE.includes(value)) return true;
  if (FALSE.includes(value)) return false;
  throw invalid(name, `a switch (${TRUE.join('/')} or ${FALSE.join('/')})`, raw);
}

/** A comma-separated list of identifiers (Dawn toggle names); [] when unset. */
export function envList(name: string): string[] {
  const raw = readEnv(name);
  if (raw === undefined) return [];
  const items = raw.split(',').map((s) => s.trim()).filter(Boolean);
  if (!items.every((s) => /^[A-Za-z0-9_]+$/.test(s))) throw invalid(name, 'a comma-separated list of names (letters, digits, _)', raw);
  return items;
}

/** Free text (paths); undefined when unset. */
export function envString(name: string): string | undefined {
  return readEnv(name);
}

/** Whether FUSEDATTN_DEBUG is on; a malformed value counts as off here (the CLI reports it). */
export function debugEnabled(): boolean {
  try {
    return envFlag('FUSEDATTN_DEBUG');
  } catch {
    return false;
  }
}

// ---------------------------------------------------------------- notes

const notes: string[] = [];

/**
 * Records something the caller should know but that is no error (a thread count clamped to the
 * core count). Kept, not printed: the CLI shows them on stderr unless --quiet, `fusedattn info`
 * lists them; FUSEDATTN_DEBUG=1 prints each one when it happens.
 */
export function addNote(text: string): void {
  if (notes.includes(text)) return;
  notes.push(text);
  if (debugEnabled()) console.error(`note: ${text}`);
}

/** The notes recorded so far (copy). */
export function configNotes(): string[] {
  return [...notes];
}

/** Thread counts above the machine's cores only add contention: clamp them, with a note. */
export function clampThreads(requested: number, cores: number, source: string): number {
  if (requested <= cores) return requested;
  addNote(`${source} = ${requested} is more than this machine's ${cores} logical core${cores === 1 ? '' : 's'}; using ${cores}`);
  return cores;
}
