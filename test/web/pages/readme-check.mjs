// Appended by the test to the README's plain-ESM snippet (the page is the snippet as written, then
// this script): runs a few suite cases through the snippet's import map against the float64
// reference and publishes them, with the text the snippet wrote, on window.__report.
import { runSuite } from './cpu-suite.mjs';

const only = new URLSearchParams(location.search).get('only')?.split(',').map(Number);
const snippetDone = new Promise((resolve) => {
  // what the snippet appended: text directly in <body> (the scripts' own text is inside them)
  const written = () => [...document.body.childNodes].filter((n) => n.nodeType === Node.TEXT_NODE).map((n) => n.textContent).join('').trim();
  const seen = () => /threads/.test(written()) && resolve(written());
  new MutationObserver(seen).observe(document.body, { childList: true, subtree: true, characterData: true });
  seen();
  setTimeout(() => resolve(`the snippet wrote nothing in 60 s: ${written()}`), 60_000);
});
window.__report = runSuite({ ...(only ? { only } : {}) }).then(
  async (report) => ({ ...report, crossOriginIsolated: globalThis.crossOriginIsolated === true, snippet: await snippetDone }),
  (e) => ({ error: `${e && e.name}: ${e && e.message}\n${e && e.stack}` }),
);
