// Scenario a: a new customer signs up, finds products with the header's search, puts two in
// the cart, pays with the approved test card, and watches the order confirm on its page
// without reloading it.

import assert from 'node:assert/strict';
import { after } from 'node:test';

import {
  CARDS,
  assertNoAlert,
  addToCart,
  cartLine,
  closeBrowser,
  expectSignedIn,
  headerSearch,
  keyPage,
  money,
  newCustomer,
  newPage,
  orderStatus,
  placeOrder,
  plainText,
  productsInStock,
  scenario,
  signUp,
  waitForOrderPage,
  waitForText,
} from '../lib/shop.mjs';

after(closeBrowser);

/** Watches the order page reach Confirmed with no navigation: a marker put on `window` on
 * arrival is still there, and the main frame never navigated. Answers the status on arrival. */
async function expectConfirmedInPlace(page) {
  let navigations = 0;
  page.on('framenavigated', (frame) => {
    if (frame === page.mainFrame()) navigations += 1;
  });
  await page.evaluate(() => {
    window.__browserTestMarker = 'arrived';
  });
  const status = orderStatus(page);
  const onArrival = ((await status.textContent()) ?? '').trim();
  assert.equal(await status.getAttribute('role'), 'status', '#order-status has role=status');
  assert.equal(await status.getAttribute('aria-live'), 'polite', '#order-status is aria-live=polite');
  await waitForText(status, /\bconfirmed\b/i, { timeout: 30_000 });
  assert.equal(
    await page.evaluate(() => window.__browserTestMarker),
    'arrived',
    'the order page confirmed without a reload',
  );
  assert.equal(navigations, 0, 'no navigation on the order page');
  return onArrival;
}

scenario('a. sign up, search, two products in the cart, pay: the order confirms live', async () => {
  // Two different seeded products with stock to spare, in one currency (a cart has one) with
  // cents, and distinct names.
  const candidates = (await productsInStock(5)).filter(
    (p, i, all) =>
      p.price.currency !== 'JPY' && all.findIndex((q) => q.name === p.name) === i,
  );
  const first = candidates[0];
  const second = candidates.find((p) => p.id !== first?.id && p.price.currency === first.price.currency);
  assert.ok(first && second, 'the demo catalog has two products in stock in one currency');

  const page = await newPage('desktop');
  const home = await page.goto('/');
  assert.equal(home.status(), 200);
  assert.equal(await page.locator('html').getAttribute('lang'), 'en');
  await keyPage(page, 'home');

  await page.goto('/signup');
  await keyPage(page, 'signup', { twin: 'reload' });
  await signUp(page, newCustomer('shopper'));
  await expectSignedIn(page, 'after sign-up');

  // Each product: from the header's search to its page, into the cart.
  for (const [n, product] of [first, second].entries()) {
    await headerSearch(page, product.name);
    const link = page.getByRole('link', { name: product.name, exact: true }).first();
    await link.waitFor();
    if (n === 0) await keyPage(page, 'search-results');
    await Promise.all([page.waitForURL(`**/products/${product.id}`), link.click()]);
    await page.getByRole('heading', { level: 1, name: product.name }).waitFor();
    if (n === 0) await keyPage(page, 'product');
    await addToCart(page, 1);
    await assertNoAlert(page, `adding ${product.name} to the cart`);
  }

  await Promise.all([
    page.waitForURL((url) => url.pathname === '/cart'),
    page.getByRole('link', { name: /^Cart\b/ }).first().click(),
  ]);
  await cartLine(page, first.name).waitFor();
  await cartLine(page, second.name).waitFor();
  const cart = await plainText(page);
  assert.match(cart, /total/i, 'the cart shows a total');
  const total = money(first.price.amount + second.price.amount);
  assert.ok(cart.includes(total), `the cart shows the total ${total}: ${cart.slice(0, 2000)}`);
  await keyPage(page, 'cart');

  await Promise.all([
    page.waitForURL((url) => url.pathname === '/checkout'),
    page.getByRole('link', { name: 'Checkout', exact: true }).click(),
  ]);
  assert.match(await plainText(page), /4242 4242 4242 4242/, 'the checkout page lists the test cards');
  await keyPage(page, 'checkout');

  await placeOrder(page, CARDS.approved);
  const orderId = await waitForOrderPage(page);
  // (The simulated provider answers at once: the page may arrive after the saga has ended; the
  // next test makes the page wait.)
  const onArrival = await expectConfirmedInPlace(page);
  console.log(`order page on arrival: ${JSON.stringify(onArrival)}`);
  await keyPage(page, 'order-confirmed');

  // The order is in the customer's list.
  await Promise.all([
    page.waitForURL((url) => url.pathname === '/orders'),
    page.getByRole('link', { name: /^Orders\b/ }).first().click(),
  ]);
  await page.locator(`a[href$="/orders/${orderId}"]`).first().waitFor();
  await keyPage(page, 'orders');
});

scenario('a. a late bank answer: the order page goes from processing to Confirmed in place', async () => {
  // The card whose authorization answers after the payment service's deadline (3 s): the
  // order stays pending until its retry, so the page arrives before the confirmation.
  const [product] = await productsInStock(5);
  const page = await newPage('desktop');
  await signUp(page, newCustomer('late'));
  await page.goto(`/products/${product.id}`);
  await addToCart(page, 1);
  await assertNoAlert(page, 'adding to the cart');
  await page.goto('/checkout');
  await placeOrder(page, CARDS.late);
  await waitForOrderPage(page);
  const onArrival = await expectConfirmedInPlace(page);
  console.log(`late card, order page on arrival: ${JSON.stringify(onArrival)}`);
  assert.doesNotMatch(onArrival, /confirmed/i, 'the page arrived before the confirmation');
  await keyPage(page, 'order-confirmed-live');
});
