// The demo as a newcomer meets it, with only a browser (Debian's Chromium driven by playwright-core),
// against `veilig-bellen demo` started by tests/demo_walkthrough_in_chromium.rs:
//
//   `/` (the walk-through, Dutch) → step 1, the municipality's website: **Veilig bellen met …** opens
//   the Yivi QR code → step 2, the simulated Yivi app: **Scan en deel**, then **Bel nu** — the demo
//   calls itself over SIP and keys in the code, and no page ever shows the code → the website says
//   the app calls now → step 3, the portal: log in, the call is **Geverifieerd**, **Opnemen** → the
//   built-in agent phone answers, **verbonden** → **Ophangen** in the app ends the call everywhere.
//
//   node tests/browser/walkthrough.test.mjs http://127.0.0.1:PORT AGENT_PASSWORD [tones]
//
// Environment: CHROMIUM (default /usr/bin/chromium); VB_SCREENSHOTS=<dir> saves screenshots.
// Exits 0 and prints "ok" when the scenario passes.

import assert from 'node:assert/strict';
import { join } from 'node:path';
import { launch } from './lib.mjs';

const [base, password, method] = process.argv.slice(2);
if (!base || !/^http:\/\/127\.0\.0\.1:\d+$/.test(base) || !password) {
  console.error('usage: node walkthrough.test.mjs http://127.0.0.1:PORT AGENT_PASSWORD [tones] (loopback only)');
  process.exit(2);
}
const STEP = 30_000;
const shots = process.env.VB_SCREENSHOTS;

async function screenshot(page, name) {
  if (shots) await page.screenshot({ path: join(shots, `${name}.png`), fullPage: true });
}

// No page may show a link code: 8 digits on their own (the BSN has 9, the number 11).
async function assertNoCode(page, where) {
  const text = await page.locator('body').innerText();
  assert.ok(!/(^|\D)\d{8}(\D|$)/.test(text), `${where} shows something like a link code: ${text}`);
  assert.ok(!text.includes('tel:'), `${where} shows a tel: link`);
}

const browser = await launch();
try {
  const context = await browser.newContext({ locale: 'nl-NL', viewport: { width: 1280, height: 800 } });

  // The walk-through: three steps in the order a citizen meets them.
  const home = await context.newPage();
  assert.equal((await home.goto(base + '/')).status(), 200);
  const steps = home.locator('ol.walkthrough > li');
  assert.equal(await steps.count(), 3);
  const hrefs = await home.locator('a.step').evaluateAll((as) => as.map((a) => a.getAttribute('href')));
  assert.deepEqual(hrefs.map((h) => h.split('?')[0]), ['/button-demo', '/irma-sim', '/portal']);
  await screenshot(home, 'walkthrough');

  // Step 1: the municipality's website (opened from the walk-through, in a tab of its own).
  const [site] = await Promise.all([
    context.waitForEvent('page'),
    home.getByRole('link', { name: 'Website openen', exact: true }).click(),
  ]);
  await site.waitForLoadState();
  await site.getByRole('button', { name: 'Veilig bellen met Gemeente Demodam' }).click();
  await site.locator('canvas.yivi-web-qr-canvas').waitFor({ state: 'visible', timeout: STEP });
  await screenshot(site, 'walkthrough-1-website');

  // Step 2: the simulated Yivi app.
  const [app] = await Promise.all([
    context.waitForEvent('page'),
    home.getByRole('link', { name: 'Yivi-app openen', exact: true }).click(),
  ]);
  await app.waitForLoadState();
  const form = app.locator('form.session').first();
  await form.waitFor({ timeout: STEP });
  await form.getByRole('button', { name: 'Scan en deel', exact: true }).click();
  await form.locator('output .shared').waitFor({ timeout: STEP });
  assert.match(await form.locator('output .shared').textContent(), /De Yivi-app belt nu \+31850000000/);
  if (method === 'tones') await form.locator('input.tones').check();
  await form.getByRole('button', { name: 'Bel nu', exact: true }).click();
  await form.locator('li[data-step="answered"]').waitFor({ timeout: STEP });
  await form.locator('li[data-step="code_sent"]').waitFor({ timeout: STEP });
  assert.match(
    await form.locator('li[data-step="code_sent"]').textContent(),
    method === 'tones' ? /8 cijfers, tones/ : /8 cijfers, rfc4733/,
  );
  await form.locator('p.portal').waitFor({ state: 'visible', timeout: STEP });
  await screenshot(app, 'walkthrough-2-app');
  await assertNoCode(app, 'the app page');

  // The website learnt that the disclosure is done, and tells the citizen the phone calls now.
  const status = site.locator('[data-veilig-bellen-status][data-state="done"]');
  await status.waitFor({ timeout: STEP });
  assert.match(await status.textContent(), /De Yivi-app belt nu Gemeente Demodam/);
  await assertNoCode(site, 'the website');

  // Step 3: the agents' portal.
  const [portal] = await Promise.all([
    context.waitForEvent('page'),
    home.getByRole('link', { name: 'Portaal openen', exact: true }).click(),
  ]);
  await portal.waitForLoadState();
  await portal.getByLabel('Gebruikersnaam', { exact: true }).fill('agent');
  await portal.getByLabel('Wachtwoord', { exact: true }).fill(password);
  await portal.getByRole('button', { name: 'Inloggen', exact: true }).click();
  const card = portal.locator('li.card').first();
  await card.locator('.badge', { hasText: 'Geverifieerd' }).waitFor({ timeout: STEP });
  await screenshot(portal, 'walkthrough-3-portal');
  await card.getByRole('button', { name: 'Opnemen', exact: true }).click();
  await card.locator('.state', { hasText: 'verbonden' }).waitFor({ timeout: STEP });
  assert.match(await card.textContent(), /Opgenomen door u/);
  await screenshot(portal, 'walkthrough-3-connected');
  await assertNoCode(portal, 'the portal');

  // The citizen hangs up in the app: the call ends in the portal too.
  await form.getByRole('button', { name: 'Ophangen', exact: true }).click();
  await form.locator('li[data-step="ended"]').waitFor({ timeout: STEP });
  await card.locator('.state', { hasText: 'beëindigd' }).waitFor({ timeout: STEP });
  console.log('ok');
} finally {
  await browser.close();
}
