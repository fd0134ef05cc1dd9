// `fusedattn generate` (src/cli/generate.ts), run through commander as main.ts will run it.
import { describe, expect, it, vi } from 'vitest';
import { Command } from 'commander';
import { generateCommand, registerGenerate, runGenerate } from '../dist/cli/generate.js';
import { TINY_TOKENIZER_VOCAB, writeTinyModel } from './model-helpers.js';

async function cli(args: string[]): Promise<string> {
  const lines: string[] = [];
  // the generated text streams through process.stdout.write, the rest through console.log
  let streamed = '';
  const write = vi.spyOn(process.stdout, 'write').mockImplementation((chunk: string | Uint8Array) => {
    streamed += String(chunk);
    return true;
  });
  const log = vi.spyOn(console, 'log').mockImplementation((s: string) => {
    if (streamed) lines.push(...streamed.replace(/\n$/, '').split('\n'));
    streamed = '';
    lines.push(s);
  });
  try {
    const program = registerGenerate(new Command('fusedattn').exitOverride());
    program.commands.forEach((c) => c.exitOverride().configureOutput({ writeErr: () => {} }));
    await program.parseAsync(['generate', ...args], { from: 'user' });
  } finally {
    log.mockRestore();
    write.mockRestore();
  }
  return lines.join('\n');
}

describe('fusedattn generate', () => {
  it('token ids in, token ids and tokens/s out; greedy twice gives the same ids', async () => {
    const { dir } = await writeTinyModel({ eos_token_id: 63 });
    const out = await cli(['--model', dir, '--tokens', '1,2,3', '--max-new-tokens', '5', '--backend', 'cpu', '--unfused']);
    const [first, , prefill, decode, backend] = out.split('\n');
    expect(first).toMatch(/^\d+(,\d+){0,4}$/);
    expect(prefill).toMatch(/^prefill: 3 tokens in [\d.]+ ms \([\d.]+ tokens\/s\)$/);
    expect(decode).toMatch(/^decode: \d tokens in [\d.]+ ms \(([\d.]+|-) tokens\/s\), stopped by (max-new-tokens|stop-token)$/);
    expect(backend).toMatch(/^backend cpu, attention unfused \(cpu\), weights [\d.]+ MiB, KV cache [\d.]+ MiB \(paged\)$/);
    expect((await cli(['--model', dir, '--tokens', '1,2,3', '--max-new-tokens', '5'])).split('\n')[0]).toBe(first);
  });

  it('text in and out with tokenizer.json; --json gives one object', async () => {
    const { dir } = await writeTinyModel({ vocab_size: TINY_TOKENIZER_VOCAB, eos_token_id: 262 }, { tokenizer: true });
    const json = JSON.parse(await cli(['--model', dir, '--prompt', 'hello world', '--max-new-tokens', '4', '--top-k', '5', '--seed', '3', '--json']));
    // the backend is auto's pick (WebGPU on a machine with a GPU, else the CPU); the fused block is
    // the default where the backend has it
    expect(json).toMatchObject({ promptTokens: 5, attention: `fused (${json.backend})` });
    expect(['cpu', 'webgpu']).toContain(json.backend);
    expect(typeof json.text).toBe('string');
    expect(json.tokens.length).toBeGreaterThan(0);
    expect(json.tokens.length).toBeLessThanOrEqual(4);
    expect(json.prefillTokensPerSecond).toBeGreaterThan(0);
    const again = JSON.parse(await cli(['--model', dir, '--prompt', 'hello world', '--max-new-tokens', '4', '--top-k', '5', '--seed', '3', '--json']));
    expect(again.tokens).toEqual(json.tokens);
  });

  it('bad flags and folders give one clear error', async () => {
    const { dir } = await writeTinyModel();
    await expect(cli(['--model', dir, '--tokens', '1,x'])).rejects.toThrow(/Expected comma-separated non-negative token ids/);
    await expect(cli(['--model', dir, '--tokens', '1', '--max-new-tokens', '0'])).rejects.toThrow(/Expected a positive integer/);
    await expect(cli(['--model', dir, '--tokens', '1', '--fused', '--unfused'])).rejects.toThrow(/cannot be used with/);
    await expect(cli(['--model', dir, '--tokens', '1', '--backend', 'tpu'])).rejects.toThrow(/Allowed choices are cpu, webgpu, auto/);
    await expect(cli(['--model', dir])).rejects.toThrow(/exactly one of --prompt <text> and --tokens <ids>/);
    await expect(cli(['--model', dir, '--prompt', 'hi'])).rejects.toThrow(/has no tokenizer.json, so text cannot be encoded; pass token ids instead/);
    await expect(cli(['--model', dir, '--tokens', '99'])).rejects.toThrow(/token ids must be integers in \[0, 64\)/);
    await expect(cli(['--model', `${dir}/nothing`, '--tokens', '1'])).rejects.toThrow(/config.json not found/);
    await expect(cli(['--tokens', '1'])).rejects.toThrow(/required option '--model <dir>'/);
  });

  it('exports the command for main.ts', () => {
    expect(generateCommand().name()).toBe('generate');
    expect(typeof runGenerate).toBe('function');
  });
});
