// Scenario c: sessions. The shop under test issues access tokens that live 3 s
// (MICROMART_IDENTITY__ACCESS_TTL_SECS=3, set by scripts/browser-test): the web service must
// refresh them without the customer noticing. Signed out, a page that needs a session sends
// the customer to sign in, saying why, and back afterwards.

import assert from 'node:assert/strict';
import { after } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';

import {
  addToCart,
  assertNoAlert,
  cartLine,
  closeBrowser,
  expectSignedIn,
  fillSignIn,
  keyPage,
  newCustomer,
  newPage,
  productsInStock,
  scenario,
  signIn,
  signOut,
  signUp,
} from '../lib/shop.mjs';

after(closeBrowser);

// Longer than the access token's 3 s lifetime (this scenario is about time: a fixed wait).
const PAST_TOKEN_LIFETIME_MS = 4_000;

async function expectStillSignedIn(page, path) {
  const onSignIn = new URL(page.url()).pathname.startsWith('/signin');
  assert.ok(!onSignIn, `${path}: sent to the sign-in page (${page.url()})`);
  assert.equal(new URL(page.url()).pathname, path, `${path}: stayed on the page`);
  await expectSignedIn(page, path);
  await assertNoAlert(page, path);
}

scenario('c. an expired access token is refreshed without the customer noticing', async () => {
  const customer = newCustomer('session');
  const [product] = await productsInStock(2);
  assert.ok(product, 'a product in stock');

  const page = await newPage('desktop');
  await signUp(page, customer);
  await signOut(page);
  await page.goto('/signin');
  await keyPage(page, 'signin');
  await signIn(page, customer);

  await sleep(PAST_TOKEN_LIFETIME_MS);
  const before = new URL(page.url()).pathname;
  await Promise.all([
    page.waitForURL((url) => url.pathname !== before),
    page.getByRole('link', { name: /^Cart\b/ }).first().click(),
  ]);
  await expectStillSignedIn(page, '/cart');

  await Promise.all([
    page.waitForURL((url) => url.pathname !== '/cart'),
    page.getByRole('link', { name: /^Orders\b/ }).first().click(),
  ]);
  await expectStillSignedIn(page, '/orders');
  await keyPage(page, 'orders-empty');

  // A write with an expired token too: the line is added.
  await sleep(PAST_TOKEN_LIFETIME_MS);
  await page.goto(`/products/${product.id}`);
  await addToCart(page, 1);
  await assertNoAlert(page, 'adding to the cart after the token expired');
  await page.goto('/cart');
  await expectStillSignedIn(page, '/cart');
  await cartLine(page, product.name).waitFor();
});

scenario('c. signed out, a page that needs a session sends to sign in, saying why', async () => {
  const customer = newCustomer('signedout');
  const page = await newPage('desktop');
  await signUp(page, customer);
  await signOut(page);

  const response = await page.goto('/orders');
  assert.ok(response.status() < 400, `/orders signed out answers ${response.status()}`);
  assert.equal(new URL(page.url()).pathname, '/signin', 'sent to the sign-in page');
  const explanation = page.getByRole('alert').or(page.getByRole('status')).first();
  await explanation.waitFor();
  const text = ((await explanation.textContent()) ?? '').trim();
  assert.ok(text.length > 0, 'the sign-in page says why');
  console.log(`signed-out explanation: ${JSON.stringify(text)}`);
  await keyPage(page, 'signin-required');

  // Signing in there returns to the page asked for.
  await fillSignIn(page, customer);
  await page.waitForURL((url) => url.pathname === '/orders');
  await expectSignedIn(page);
});
