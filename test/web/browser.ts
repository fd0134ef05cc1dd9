// One headless Debian Chromium for every browser test, driven by puppeteer-core (its own browser
// download cannot run here). scripts/setup.mjs installs Chromium with apt when it can; otherwise
// `browserSkipReason()` says why and the tests skip loudly.
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Browser, Page } from 'puppeteer-core';

export const CHROMIUM = process.env.FUSEDATTN_CHROMIUM ?? '/usr/bin/chromium';

export function browserSkipReason(): string | undefined {
  if (process.env.FUSEDATTN_BROWSER_SKIP_REASON) return process.env.FUSEDATTN_BROWSER_SKIP_REASON;
  if (!existsSync(CHROMIUM)) return `${CHROMIUM} not found (apt-get install chromium; npm test installs it when run as root on Debian)`;
  return undefined;
}

export interface SharedBrowser {
  browser: Browser;
  /** Console lines and page errors of every page opened with newPage (printed when a check fails). */
  logs: string[];
  newPage(): Promise<Page>;
  close(): Promise<void>;
}

export async function launchBrowser(): Promise<SharedBrowser> {
  const { default: puppeteer } = await import('puppeteer-core');
  const profile = mkdtempSync(join(tmpdir(), 'fusedattn-chromium-'));
  const browser = await puppeteer.launch({
    executablePath: CHROMIUM,
    headless: true,
    userDataDir: profile,
    args: [
      '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync',
      // WebGPU on Linux is behind this flag; with --disable-gpu it runs on SwiftShader (CPU Vulkan)
      '--enable-unsafe-webgpu',
    ],
  });
  const logs: string[] = [];
  return {
    browser,
    logs,
    async newPage() {
      const page = await browser.newPage();
      page.on('console', (m) => logs.push(`[${m.type()}] ${m.text()}`));
      page.on('pageerror', (e) => logs.push(`[pageerror] ${(e as Error).message}`));
      page.on('requestfailed', (r) => logs.push(`[requestfailed] ${r.url()} ${r.failure()?.errorText ?? ''}`));
      return page;
    },
    async close() {
      await browser.close();
      rmSync(profile, { recursive: true, force: true });
    },
  };
}
