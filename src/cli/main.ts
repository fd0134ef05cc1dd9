#!/usr/bin/env node
// The `fusedattn` command. Every failure ends as one line on stderr ("error: <message>") and a
// non-zero exit, never a stack trace: library errors carry messages that name the argument, the
// expected and the received value, and commander reports usage errors the same way.
// Exit codes: 0 success, 1 bad input or failed check, 2 usage error (unknown flag, bad value).
// FUSEDATTN_DEBUG=1 adds the stack of unexpected errors, for us.
import { createRequire } from 'node:module';
import { Command, CommanderError } from 'commander';
import { configNotes, debugEnabled } from '../core/env.js';
import { FusedAttnError } from '../core/errors.js';
import { UsageError } from './usage.js';
import { blockBenchCommand } from './block.js';
import { demoCommand } from './demo.js';
import { generateCommand } from './generate.js';
import { infoCommand } from './info.js';
import { runCommand } from './run.js';
import { verifyCommand } from './verify.js';

const { version } = createRequire(import.meta.url)('../../package.json') as { version: string };

export const EXIT_FAILURE = 1;
export const EXIT_USAGE = 2;

function program(): Command {
  const cli = configure(new Command('fusedattn'))
    .description('FlashAttention and fused attention for JavaScript: run attention on .npy files, inspect backends, verify them')
    .version(version);
  for (const command of [runCommand(), infoCommand(), verifyCommand(), demoCommand(), generateCommand(), blockBenchCommand()]) cli.addCommand(configure(command));
  return cli;
}

/** Errors thrown to main() instead of exiting, and printed on one line (suggestions included). */
function configure(command: Command): Command {
  return command
    .exitOverride()
    .showSuggestionAfterError()
    .configureOutput({ outputError: (text, write) => write(`${oneLine(text)}\n`) });
}

/** One line, whatever the message holds. */
function oneLine(text: string): string {
  return text.replace(/\s*\n\s*/g, ' ').trim();
}

export async function main(argv: string[]): Promise<number> {
  try {
    await program().parseAsync(argv, { from: 'user' });
    return process.exitCode === undefined ? 0 : Number(process.exitCode);
  } catch (e) {
    return report(e);
  } finally {
    // what the user should know but is no error (a thread count clamped to the cores)
    if (!argv.includes('--quiet')) for (const note of configNotes()) console.error(`note: ${note}`);
  }
}

/** Prints a failure as one line; returns the exit code (2 usage, 1 anything else). */
function report(e: unknown): number {
  if (e instanceof CommanderError) {
    // commander has printed its own "error: ..." line (or the help / version text) already
    return e.exitCode === 0 ? 0 : EXIT_USAGE;
  }
  if (e instanceof UsageError) {
    console.error(`error: ${oneLine(e.message)}`);
    return EXIT_USAGE;
  }
  if (e instanceof FusedAttnError) {
    console.error(`error: ${oneLine(e.message)}`);
    return EXIT_FAILURE;
  }
  const message = e instanceof Error ? e.message : String(e);
  console.error(`error: ${oneLine(message) || 'unknown failure'} (unexpected; set FUSEDATTN_DEBUG=1 for the stack)`);
  if (debugEnabled() && e instanceof Error) console.error(e.stack);
  return EXIT_FAILURE;
}

// Exit explicitly: a GPU device or the CPU worker pool must not keep a finished command alive.
// (A promise chain, not top-level await: no module of the package uses it.)
void main(process.argv.slice(2)).then((code) => process.stdout.write('', () => process.exit(code)));
