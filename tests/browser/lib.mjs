// What the browser scripts share: Chromium's launch, bounded waits, and the two steps every
// citizen's scenario starts with (the page's button starts a session; the Yivi app discloses).

import assert from 'node:assert/strict';
import { createInterface } from 'node:readline';
import { chromium } from 'playwright-core';

// Debian's Chromium, headless, quiet: no sandbox (CI runs as root), no GPU, no background traffic.
const ARGS = [
  '--no-sandbox',
  '--disable-gpu',
  '--disable-background-networking',
  '--disable-quic',
  '--no-first-run',
  '--disable-component-update',
  '--disable-sync',
];

// Chromium's own test microphone, without the permission prompt.
export const FAKE_MICROPHONE = ['--use-fake-ui-for-media-stream', '--use-fake-device-for-media-stream'];

function options(args) {
  return { executablePath: process.env.CHROMIUM || '/usr/bin/chromium', headless: true, args: [...ARGS, ...args] };
}

// A browser with `args` beside the usual ones.
export function launch(args = []) {
  return chromium.launch(options(args));
}

// A browser with a profile directory of its own (what media permissions and autoplay need).
export function launchPersistent(profile, args = [], more = {}) {
  return chromium.launchPersistentContext(profile, { ...options(args), ...more });
}

// Polls `check` until it gives something truthy (returned), for at most `limit` ms.
export async function until(what, check, limit = 20_000) {
  const deadline = Date.now() + limit;
  for (;;) {
    const value = await check();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out: ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

// Clicks the Veilig bellen button on `page` (already at a page with the widget) and returns the
// session our server handed the widget.
export async function clickButton(page, limit = 20_000) {
  const started = page.waitForResponse(
    (r) => r.url().endsWith('/api/v1/sessions') && r.request().method() === 'POST',
    { timeout: limit },
  );
  await page.click('button[data-veilig-bellen]');
  const response = await started;
  assert.equal(response.status(), 200, 'session start failed');
  return response.json();
}

// What the Yivi app does after scanning `sessionPtr`: POST the simulator's disclose endpoint on
// `base`. Returns the simulator's answer (clientReturnUrl, proofStatus, status).
export async function discloseAsApp(base, sessionPtr, body = { attributes: {} }) {
  const clientToken = new URL(sessionPtr.u).pathname.split('/').pop();
  const response = await fetch(`${base}/irma-sim/session/${clientToken}/disclose`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
  assert.equal(response.status, 200, 'the simulator refused the disclosure');
  return response.json();
}

// Talking to the Rust test that steers a script: `step(name, data)` prints `STEP <name> <json>`
// and returns the JSON line the test writes back on stdin. Stdin is read from the first step on.
let lines = null;
const replies = [];
const waiting = [];

export async function step(name, data = null) {
  if (!lines) {
    lines = createInterface({ input: process.stdin });
    lines.on('line', (line) => {
      const next = waiting.shift();
      if (next) next(line);
      else replies.push(line);
    });
  }
  console.log(`STEP ${name} ${JSON.stringify(data)}`);
  const line = replies.length > 0 ? replies.shift() : await new Promise((resolve) => waiting.push(resolve));
  return JSON.parse(line);
}

// Stops reading stdin (after the last step), so the script may end by itself.
export function endSteps() {
  if (lines) lines.close();
}
