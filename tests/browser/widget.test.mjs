// The website button in a real browser (Debian's Chromium driven by playwright-core), against a
// running veilig-bellen server with the IRMA simulator nested at /irma-sim.
//
//   node tests/browser/widget.test.mjs http://127.0.0.1:PORT
//
// 1. Desktop, Dutch: the demo page's button opens the yivi-frontend popup with a QR code; the
//    "Yivi app" (the simulator's disclose endpoint) discloses; the page says the phone will call.
//    The link code is in the app's tel: URL and nowhere in the page or its API responses.
// 2. Phone (Android user agent), English: the popup offers "Open Yivi app" instead of a QR code;
//    the citizen declines in the app, the popup offers to try again, the citizen closes it; the
//    page says sharing was stopped.
//
// Environment: CHROMIUM (default /usr/bin/chromium); VB_SCREENSHOTS=<dir> saves screenshots.
// Exits 0 when every scenario passes; prints "N passed, N failed".

import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { clickButton as startSession, discloseAsApp, launchPersistent } from './lib.mjs';

const base = process.argv[2];
if (!base || !/^http:\/\/(127\.0\.0\.1|\[::1\]|localhost):\d+$/.test(base)) {
  console.error('usage: node widget.test.mjs http://127.0.0.1:PORT (loopback only)');
  process.exit(2);
}
const shots = process.env.VB_SCREENSHOTS;
const STEP = 20_000;

async function screenshot(page, name) {
  if (shots) await page.screenshot({ path: join(shots, `${name}.png`) });
}

// What the Yivi app does after scanning: POST the simulator's disclose endpoint.
const app = (sessionPtr, body) => discloseAsApp(base, sessionPtr, body);

// Open the demo page, click the button, return the session our server handed the widget.
const consoleLog = [];

async function clickButton(page, apiBodies) {
  page.on('console', (m) => consoleLog.push(`console.${m.type()}: ${m.text()}`));
  page.on('pageerror', (e) => consoleLog.push(`pageerror: ${e}`));
  page.on('response', (r) => {
    if (r.status() >= 400) consoleLog.push(`http ${r.status()}: ${r.request().method()} ${r.url()}`);
  });
  page.on('requestfailed', (r) => consoleLog.push(`requestfailed: ${r.method()} ${r.url()} ${r.failure()?.errorText}`));
  page.on('response', async (response) => {
    if (!response.url().includes('/api/v1/')) return;
    try {
      apiBodies.push(await response.text());
    } catch {
      // Body gone (navigation); nothing to check.
    }
  });
  await page.goto(`${base}/button-demo`);
  if (process.env.VB_DEBUG) await page.evaluate(() => document.querySelector('script[src$="widget.js"]').setAttribute('data-debug', ''));
  const session = await startSession(page, STEP);
  assert.ok(session.sessionPtr && session.sessionPtr.u, 'no session pointer');
  assert.match(session.token, /^[0-9a-f]{32}$/);
  return session;
}

async function desktopDutch(context) {
  const page = await context.newPage();
  const errors = [];
  page.on('pageerror', (e) => errors.push(String(e)));
  const apiBodies = [];
  const session = await clickButton(page, apiBodies);

  const qr = page.locator('canvas.yivi-web-qr-canvas');
  await qr.waitFor({ state: 'visible', timeout: STEP });
  const ink = await qr.evaluate((canvas) => {
    const data = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
    let dark = 0;
    for (let i = 0; i < data.length; i += 4) if (data[i] < 128 && data[i + 3] > 0) dark += 1;
    return dark / (data.length / 4);
  });
  assert.ok(ink > 0.2 && ink < 0.8, `QR canvas looks empty (${ink})`);
  await screenshot(page, 'desktop-qr');

  const answer = await app(session.sessionPtr, { attributes: {} });
  assert.equal(answer.status, 'DONE');
  const match = /^tel:\+\d+,(\d{8})$/.exec(answer.clientReturnUrl || '');
  assert.ok(match, 'the app did not get tel:<number>,<code>');
  const code = match[1];

  const done = page.locator('[data-veilig-bellen-status][data-state="done"]');
  await done.waitFor({ timeout: STEP });
  const text = await done.textContent();
  assert.match(text, /Gelukt\. De Yivi-app belt nu Gemeente Demodam/);
  await screenshot(page, 'desktop-done');

  const html = await page.content();
  assert.ok(!html.includes(code), 'the link code reached the page');
  assert.ok(apiBodies.length >= 2, 'API responses not seen');
  for (const body of apiBodies) assert.ok(!body.includes(code), 'an API response carried the link code');
  assert.deepEqual(errors, [], 'page errors');
  await page.close();
}

async function phoneEnglish(context) {
  const page = await context.newPage();
  await page.addInitScript(() => {
    const ua = 'Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Mobile Safari/537.36';
    Object.defineProperty(Navigator.prototype, 'userAgent', { get: () => ua });
    document.addEventListener('DOMContentLoaded', () => {
      document.documentElement.lang = 'en';
    });
  });
  const session = await clickButton(page, []);
  const link = page.locator('a.yivi-web-button-link');
  await link.waitFor({ state: 'visible', timeout: STEP });
  const href = await link.getAttribute('href');
  const clientToken = new URL(session.sessionPtr.u).pathname.split('/').pop();
  assert.ok(href.startsWith('intent://qr/json/') && href.includes(clientToken), 'no app link to the session');
  assert.match(await page.locator('.yivi-web-button').first().textContent(), /Open Yivi app/);
  assert.equal(await page.locator('canvas.yivi-web-qr-canvas').count(), 0, 'a phone gets no QR code');
  await screenshot(page, 'phone-open-app');

  const answer = await app(session.sessionPtr, { cancel: true });
  assert.equal(answer.status, 'CANCELLED');
  // The popup offers to try again; the citizen closes it instead.
  const retry = page.locator('.yivi-web-restart-button');
  await retry.first().waitFor({ state: 'visible', timeout: STEP });
  await screenshot(page, 'phone-cancelled');
  await page.click('.yivi-web-close');
  const stopped = page.locator('[data-veilig-bellen-status][data-state="cancelled"]');
  await stopped.waitFor({ timeout: STEP });
  assert.match(await stopped.textContent(), /Sharing your data was stopped/);
  await page.close();
}

const profile = mkdtempSync(join(tmpdir(), 'vb-chromium-'));
const context = await launchPersistent(profile, [], { viewport: { width: 1024, height: 768 } });

let passed = 0;
let failed = 0;
try {
  for (const [name, scenario] of [
    ['desktop, Dutch: QR, disclosure, the phone will call', desktopDutch],
    ['phone, English: open-the-app button, declined', phoneEnglish],
  ]) {
    consoleLog.length = 0;
    try {
      await scenario(context);
      console.log(`ok - ${name}`);
      passed += 1;
    } catch (e) {
      console.log(`not ok - ${name}\n  ${String(e && e.stack ? e.stack : e).split('\n').join('\n  ')}`);
      for (const line of consoleLog) console.log(`  # ${line}`);
      for (const page of context.pages()) await screenshot(page, `failed-${passed + failed}`);
      failed += 1;
    }
  }
} finally {
  await context.close();
  rmSync(profile, { recursive: true, force: true });
}
console.log(`${passed} passed, ${failed} failed`);
process.exit(failed === 0 ? 0 : 1);
