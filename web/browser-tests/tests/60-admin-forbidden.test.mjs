// Scenario f: the admin console is the admin's. A signed-in customer gets a 403 page that
// explains, with no admin navigation; a visitor who is not signed in is sent to sign in.

import assert from 'node:assert/strict';
import { after } from 'node:test';

import {
  admin,
  closeBrowser,
  expectHtmlPage,
  expectSignedIn,
  fillSignIn,
  keyPage,
  newCustomer,
  newPage,
  scenario,
  signUp,
} from '../lib/shop.mjs';

after(closeBrowser);

/** Links only the admin console (or an admin's header) has. */
const ADMIN_ONLY_LINKS = ['Admin', 'Categories', 'Import', 'New product'];

scenario('f. a customer gets 403 with an explanation at /admin, and no admin nav', async () => {
  const page = await newPage('desktop');
  await signUp(page, newCustomer('notadmin'));

  for (const path of ['/admin', '/admin/products', '/admin/orders']) {
    const response = await page.goto(path);
    assert.equal(response.status(), 403, `${path} as a customer`);
    await expectHtmlPage(page, `${path} as a customer`);
    assert.equal(new URL(page.url()).pathname, path, `${path}: no redirect`);
    await expectSignedIn(page, `${path} (403 page)`);
    const main = page.locator('main').first();
    const explanation = ((await main.textContent().catch(() => null)) ?? '').trim();
    assert.ok(explanation.length > 20, `${path}: the 403 page explains (${JSON.stringify(explanation)})`);
    for (const name of ADMIN_ONLY_LINKS) {
      assert.equal(
        await page.getByRole('link', { name, exact: true }).count(),
        0,
        `${path}: the 403 page has no "${name}" link`,
      );
    }
    if (path === '/admin') {
      console.log(`403 explanation: ${JSON.stringify(explanation.replace(/\s+/g, ' '))}`);
      await keyPage(page, 'admin-forbidden', { status: 403 });
    }
  }
});

scenario('f. signed out, /admin sends to sign in, and back after the admin signs in', async () => {
  const page = await newPage('desktop');
  const response = await page.goto('/admin');
  assert.ok(response.status() < 400, `/admin signed out answers ${response.status()}`);
  assert.equal(new URL(page.url()).pathname, '/signin', '/admin signed out: sent to sign in');
  await fillSignIn(page, admin());
  await page.waitForURL((url) => url.pathname === '/admin');
  await page.getByRole('link', { name: 'Products', exact: true }).first().waitFor();
});
