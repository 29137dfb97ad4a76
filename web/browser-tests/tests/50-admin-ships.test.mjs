// Scenario e: a customer's confirmed order, shipped by the admin from the console; the
// customer's order page then says Shipped.

import assert from 'node:assert/strict';
import { after } from 'node:test';

import {
  CARDS,
  addToCart,
  admin,
  alertText,
  assertNoAlert,
  closeBrowser,
  createProductViaApi,
  eventually,
  expectHtmlPage,
  fillOrSelect,
  keyPage,
  newCustomer,
  newPage,
  orderStatus,
  placeOrder,
  plainText,
  scenario,
  signIn,
  signUp,
  waitForOrderPage,
  waitForText,
} from '../lib/shop.mjs';

after(closeBrowser);

scenario('e. the admin ships a confirmed order; the customer sees Shipped', async () => {
  const product = await createProductViaApi({ stock: 10 });

  // The customer's confirmed order.
  const customer = await newPage('desktop');
  await signUp(customer, newCustomer('shipped'));
  await customer.goto(`/products/${product.id}`);
  await addToCart(customer, 1);
  await assertNoAlert(customer, 'adding to the cart');
  await customer.goto('/checkout');
  await placeOrder(customer, CARDS.approved);
  const orderId = await waitForOrderPage(customer);
  await waitForText(orderStatus(customer), /\bconfirmed\b/i, { timeout: 30_000 });

  // The admin finds it among the confirmed orders and ships it.
  const console_ = await newPage('desktop');
  await signIn(console_, admin());
  const orders = await console_.goto('/admin/orders');
  assert.equal(orders.status(), 200, '/admin/orders as the admin');
  await keyPage(console_, 'admin-orders');
  await fillOrSelect(console_.getByLabel('Status', { exact: true }), 'confirmed');
  await console_.getByRole('button', { name: 'Filter', exact: true }).click();
  await console_.waitForURL((url) => /status=confirmed/i.test(url.search));
  const link = console_.locator(`a[href$="/admin/orders/${orderId}"]`).first();
  await link.waitFor();
  await keyPage(console_, 'admin-orders-confirmed');
  await Promise.all([
    console_.waitForURL((url) => url.pathname === `/admin/orders/${orderId}`),
    link.click(),
  ]);
  await keyPage(console_, 'admin-order');
  await console_.getByRole('button', { name: 'Ship order', exact: true }).click();
  await expectHtmlPage(console_, 'Ship order');
  const refused = await alertText(console_);
  assert.equal(refused, '', `shipping: ${refused}`);
  await eventually('the admin page says shipped', async () => /shipped/i.test(await plainText(console_)));
  await keyPage(console_, 'admin-order-shipped');

  // The customer's page, opened again, says Shipped.
  await eventually(
    'the customer order page says Shipped',
    async () => {
      await customer.reload();
      return /\bshipped\b/i.test((await orderStatus(customer).textContent()) ?? '');
    },
    { timeout: 20_000, interval: 500 },
  );
  await keyPage(customer, 'order-shipped');
});
