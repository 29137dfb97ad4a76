// Scenario b: the declining test card. The order ends Cancelled with a reason a person
// understands, and the stock the checkout held is given back.

import assert from 'node:assert/strict';
import { after } from 'node:test';

import {
  CARDS,
  addToCart,
  assertNoAlert,
  closeBrowser,
  createProductViaApi,
  eventually,
  keyPage,
  newCustomer,
  newPage,
  orderStatus,
  placeOrder,
  scenario,
  signUp,
  stockText,
  stockViaApi,
  waitForOrderPage,
  waitForText,
} from '../lib/shop.mjs';

after(closeBrowser);

scenario('b. a declined card: the order is cancelled with the reason, the stock is back', async () => {
  // A product of its own with little stock, so that the page's stock text is exact.
  const product = await createProductViaApi({ stock: 3 });

  const page = await newPage('desktop');
  await signUp(page, newCustomer('declined'));
  await page.goto(`/products/${product.id}`);
  await page.getByRole('heading', { level: 1, name: product.name }).waitFor();
  const before = await stockText(page);
  assert.ok(before, 'the product page shows its stock (In stock / Only N left / Sold out)');
  assert.doesNotMatch(before, /sold out/i);

  await addToCart(page, 1);
  await assertNoAlert(page, 'adding to the cart');
  await page.goto('/checkout');
  await placeOrder(page, CARDS.declined);
  await waitForOrderPage(page);

  const status = orderStatus(page);
  await waitForText(status, /\bcancell?ed\b/i, { timeout: 30_000 });
  // The reason, in the status or elsewhere on the order page, in words.
  const statusText = (await status.textContent()) ?? '';
  const pageText = (await page.locator('main').first().textContent().catch(() => null)) ?? '';
  const reasonText = /declined/i.test(statusText) ? statusText : pageText;
  assert.match(reasonText, /card[^.]*declined|declined[^.]*card/i, 'the page says the card was declined');
  assert.doesNotMatch(reasonText, /card[_-]declined/, 'the reason is words, not a code');
  await keyPage(page, 'order-declined');

  // The reservation is released: the API's count and the page's text are as before.
  await eventually('the stock back at 3', async () => (await stockViaApi(product.id)).available === 3);
  await page.goto(`/products/${product.id}`);
  assert.equal(await stockText(page), before, "the product page's stock is what it was");
});
