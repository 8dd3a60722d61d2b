// Asking for more during a call, in a real browser (Debian's Chromium driven by playwright-core):
// the citizen's page (the button demo, with the widget) and the agent's portal, against a
// veilig-bellen server the Rust test (tests/extra_request_in_chromium.rs) steers: when this script
// needs the phone call placed or ended it prints `STEP <name> <json>` and reads one JSON line from
// stdin.
//
//   node tests/browser/extra_request.test.mjs http://127.0.0.1:PORT '{"agent":…,"password":…}' [phone|browser]
//
// 1. phone (default): the citizen clicks the button, the "Yivi app" (the simulator) discloses, the
//    page says the phone will call; the page stays open. STEP call {code} → the test places the
//    call; the request comes to the page in its status answers.
//    browser: after the disclosure the citizen clicks **Bel via de browser** (Chromium's fake
//    microphone); STEP browser_call {} → the test finds the call; the request comes to the page
//    over the call's WebRTC data channel, never in a status answer.
// 2. The agent logs in, the verified call waits; **Vraag gegevens** → **Adres**.
// 3. The citizen's page says what is asked; **Deel met Yivi** shows the new Yivi session (QR
//    code); the card says it is on the caller's screen. The app discloses: the card lists the address, marked as added
//    during the call; the citizen's page thanks them.
// 4. **Ophangen**: the card says beëindigd and the address is gone from the page. STEP ended.
//
// Environment: CHROMIUM (default /usr/bin/chromium); VB_SCREENSHOTS=<dir> saves screenshots.
// Exits 0 when the scenario passes; prints "N passed, N failed".

import assert from 'node:assert/strict';
import { join } from 'node:path';
import { FAKE_MICROPHONE, clickButton, discloseAsApp, launch, step } from './lib.mjs';

const [base, credentialsJson, mode = 'phone'] = process.argv.slice(2);
if (!base || !/^http:\/\/(127\.0\.0\.1|\[::1\]|localhost):\d+$/.test(base)) {
  console.error('usage: node extra_request.test.mjs http://127.0.0.1:PORT CREDENTIALS_JSON (loopback only)');
  process.exit(2);
}
if (mode !== 'phone' && mode !== 'browser') {
  console.error(`mode must be phone or browser, not ${mode}`);
  process.exit(2);
}
const creds = JSON.parse(credentialsJson || '{}');
const shots = process.env.VB_SCREENSHOTS;
const STEP = 20_000;


async function screenshot(page, name) {
  if (shots) await page.screenshot({ path: join(shots, `${name}.png`), fullPage: true });
}

const problems = [];
const consoleLog = [];

function watch(page, who) {
  page.on('console', (m) => {
    consoleLog.push(`${who} console.${m.type()}: ${m.text()}`);
    if (/Content.Security.Policy|Refused to/i.test(m.text())) problems.push(`${who} CSP: ${m.text()}`);
  });
  page.on('pageerror', (e) => problems.push(`${who} pageerror: ${e}`));
  page.on('requestfailed', (r) => consoleLog.push(`${who} requestfailed: ${r.method()} ${r.url()} ${r.failure()?.errorText}`));
}

// What the Yivi app does after scanning: POST the simulator's disclose endpoint.
const app = (sessionPtr, body) => discloseAsApp(base, sessionPtr, body);

async function scenario(browser) {
  // ---- The citizen's page: disclose, the phone will call, the page stays open.
  const citizenContext = await browser.newContext({ locale: 'nl-NL', viewport: { width: 1024, height: 768 } });
  // What the page's WebRTC data channel receives (a browser call's requests come that way).
  await citizenContext.addInitScript(() => {
    window.__dataMessages = [];
    if (!window.RTCPeerConnection) return;
    const create = RTCPeerConnection.prototype.createDataChannel;
    RTCPeerConnection.prototype.createDataChannel = function (...args) {
      const channel = create.apply(this, args);
      channel.addEventListener('message', (e) => window.__dataMessages.push(String(e.data)));
      return channel;
    };
  });
  const citizen = await citizenContext.newPage();
  watch(citizen, 'citizen');
  const pushes = [];
  citizen.on('response', async (response) => {
    if (!/\/api\/v1\/sessions\/[0-9a-f]+\/status\?/.test(response.url())) return;
    try {
      const body = await response.json();
      if (body.request) pushes.push(body.request);
    } catch {
      // Not JSON, or gone.
    }
  });
  await citizen.goto(`${base}/button-demo`);
  const session = await clickButton(citizen);
  await citizen.locator('canvas.yivi-web-qr-canvas').first().waitFor({ state: 'visible', timeout: STEP });
  const answer = await app(session.sessionPtr, { attributes: {} });
  const code = /^tel:\+\d+,(\d{8})$/.exec(answer.clientReturnUrl || '')[1];
  await citizen.locator('[data-veilig-bellen-status][data-state="done"]').waitFor({ timeout: STEP });
  let call;
  if (mode === 'phone') {
    call = await step('call', { code });
  } else {
    await citizen.locator('[data-veilig-bellen-call] button[data-action="call"]').click({ timeout: STEP });
    await citizen.locator('[data-veilig-bellen-call][data-state="connected"]').waitFor({ timeout: STEP });
    call = await step('browser_call', {});
  }
  // The request as the page got it: from a status answer (phone) or the data channel (browser).
  const dataPushes = async () =>
    (await citizen.evaluate(() => window.__dataMessages))
      .map((m) => JSON.parse(m))
      .filter((m) => m.type === 'request')
      .map((m) => m.request);

  // ---- The agent: log in, the verified call waits; Vraag gegevens → Adres.
  const portalContext = await browser.newContext({ locale: 'nl-NL', viewport: { width: 1280, height: 900 } });
  await portalContext.addInitScript(() => {
    window.__cspViolations = [];
    document.addEventListener('securitypolicyviolation', (e) => {
      window.__cspViolations.push(`${e.violatedDirective} ${e.blockedURI}`);
    });
  });
  const portal = await portalContext.newPage();
  watch(portal, 'portal');
  await portal.goto(`${base}/portal`);
  await portal.getByLabel('Gebruikersnaam', { exact: true }).fill(creds.agent);
  await portal.getByLabel('Wachtwoord', { exact: true }).fill(creds.password);
  await portal.getByRole('button', { name: 'Inloggen', exact: true }).click();
  const card = portal.locator(`li.card[data-call-id="${call.id}"]`);
  await card.locator('.badge', { hasText: 'Geverifieerd' }).waitFor({ timeout: STEP });
  const menu = card.locator('details.request-menu');
  await menu.locator('summary', { hasText: 'Vraag gegevens' }).click();
  await screenshot(portal, 'extra-request-menu');
  await menu.getByRole('button', { name: 'Adres', exact: true }).click();

  // ---- The citizen's page shows what is asked, with a new Yivi session.
  const asked = citizen.locator('[data-veilig-bellen-request][data-state="pending"]');
  await asked.waitFor({ timeout: STEP });
  assert.match(await asked.textContent(), /Gemeente Demodam vraagt u tijdens het gesprek om: Adres\./);
  await screenshot(citizen, 'extra-request-citizen-asked');
  await asked.getByRole('button', { name: 'Deel met Yivi', exact: true }).click();
  await citizen.locator('canvas.yivi-web-qr-canvas').last().waitFor({ state: 'visible', timeout: STEP });
  await screenshot(citizen, 'extra-request-citizen-qr');
  const push = (mode === 'phone' ? pushes : await dataPushes()).find((p) => p.state === 'pending' && p.sessionPtr);
  assert.ok(push, 'the page got no session pointer');
  if (mode === 'browser') assert.deepEqual(pushes, [], 'a browser call\'s request came in a status answer');
  assert.equal(push.label, 'Adres');
  const request = card.locator('li.request').last();
  await request.locator('.request-state', { hasText: 'staat op het scherm van de beller' }).waitFor({ timeout: STEP });

  // ---- The app discloses: the card gains the address, marked as added during the call.
  await app(push.sessionPtr, { attributes: {} });
  await request.locator('.request-state', { hasText: 'ontvangen' }).waitFor({ timeout: STEP });
  const added = card.locator('.attributes-added .attribute', { has: portal.locator('dt', { hasText: 'Straat' }) });
  assert.match((await added.locator('dd').textContent()).trim(), /^Voorbeeldstraat \(toegevoegd tijdens het gesprek\)$/);
  await screenshot(portal, 'extra-request-received');
  const thanked = citizen.locator('[data-veilig-bellen-request][data-state="done"]');
  await thanked.waitFor({ timeout: STEP });
  assert.match(await thanked.textContent(), /Dank u\. De medewerker heeft het ontvangen\./);
  await screenshot(citizen, 'extra-request-citizen-done');

  // ---- The call ends: the address leaves the page.
  await card.getByRole('button', { name: 'Ophangen', exact: true }).click();
  await card.locator('.state', { hasText: 'beëindigd' }).waitFor({ timeout: STEP });
  const text = await portal.locator('body').innerText();
  assert.ok(!text.includes('Voorbeeldstraat'), 'the address is still on the page');
  assert.match(text, /Adres — ontvangen/, 'the request itself stays listed');
  if (mode === 'browser') {
    const ended = citizen.locator('[data-veilig-bellen-call][data-state="ended"]');
    await ended.waitFor({ timeout: STEP });
    assert.match(await ended.textContent(), /Het gesprek is beëindigd\./);
    const states = (await dataPushes()).map((p) => p.state);
    assert.equal(states[states.length - 1], 'done', `the data channel's last word on the request: ${states}`);
  }
  await step('ended', { id: call.id });
  assert.deepEqual(await portal.evaluate(() => window.__cspViolations), [], 'CSP violations');
  assert.deepEqual(problems, [], 'page errors or CSP errors');
}

// A browser call's microphone: Chromium's own test signal, no prompt.
const browser = await launch(mode === 'browser' ? FAKE_MICROPHONE : []);
let passed = 0;
let failed = 0;
try {
  await scenario(browser);
  console.log(`ok - the agent asks for the address, the ${mode} caller's page shows it, the card gains it`);
  passed += 1;
} catch (e) {
  console.log(`not ok - extra request\n  ${String(e && e.stack ? e.stack : e).split('\n').join('\n  ')}`);
  for (const line of consoleLog) console.log(`  # ${line}`);
  failed += 1;
} finally {
  await browser.close();
}
console.log(`${passed} passed, ${failed} failed`);
process.exit(failed === 0 ? 0 : 1);
