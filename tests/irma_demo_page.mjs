// The IRMA simulator's demo page in a real browser (Debian's Chromium driven by playwright-core from
// tests/browser/node_modules): a person finds the waiting session, changes a value and clicks
// "Scan en deel"; the page says which number the Yivi app would call — never the link code (only
// `demo` offers "Bel nu", which calls server-side). Started by tests/irma_demo_page_in_chromium.rs.
//
//   node tests/irma_demo_page.mjs http://127.0.0.1:PORT/irma-sim <clientToken> <expected tel: URL>
//
// Environment: CHROMIUM (default /usr/bin/chromium). Exits 0 and prints "ok" when the scenario passes.

import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { launchPersistent } from './browser/lib.mjs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';


const [base, clientToken, expected] = process.argv.slice(2);
if (!base || !/^http:\/\/127\.0\.0\.1:\d+\/irma-sim$/.test(base) || !clientToken || !expected) {
  console.error('usage: node irma_demo_page.mjs http://127.0.0.1:PORT/irma-sim CLIENT_TOKEN TEL_URL (loopback only)');
  process.exit(2);
}

const profile = mkdtempSync(join(tmpdir(), 'vb-irma-sim-'));
const context = await launchPersistent(profile);
try {
  const page = await context.newPage();
  const response = await page.goto(`${base}?lang=nl`);
  assert.match(response.headers()['x-irma-simulator'], /NOT an IRMA server/);
  assert.match(await page.locator('.banner').textContent(), /NOT an IRMA server/);

  const form = page.locator(`form.session[data-client="${clientToken}"]`);
  await form.waitFor({ timeout: 20_000 });
  await form.locator('input[name="irma-demo.gemeente.personalData.fullname"]').fill('Piet Puk');
  assert.equal(await form.locator('input[name="irma-demo.gemeente.personalData.bsn"]').inputValue(), '999993653');
  await form.getByRole('button', { name: 'Scan en deel', exact: true }).click();

  const shared = form.locator('output .shared');
  await shared.waitFor({ timeout: 20_000 });
  const [number, code] = expected.replace(/^tel:/, '').split(',');
  assert.match(await shared.textContent(), new RegExp(`De Yivi-app zou nu \\${number} bellen`));
  assert.equal(await form.locator('output').getAttribute('data-status'), 'DONE / VALID');
  const text = await page.locator('body').innerText();
  assert.ok(!text.includes(code) && !text.includes('tel:'), `the page shows the link code: ${text}`);
  assert.equal(await form.getByRole('button', { name: 'Bel nu' }).count(), 0, 'no dialer here');
  console.log('ok');
} finally {
  await context.close();
  rmSync(profile, { recursive: true, force: true });
}
