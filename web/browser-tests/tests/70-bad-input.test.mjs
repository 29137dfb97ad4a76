// Scenario g: bad input from the pages. Each is tried past the browser's own form checks too
// (required, max: a person with an old browser, or a bot, sends it anyway): the server must
// answer with a message on the page, and change nothing.

import assert from 'node:assert/strict';
import { after } from 'node:test';

import {
  CARDS,
  addToCart,
  alertText,
  api,
  assertNoAlert,
  cartLine,
  closeBrowser,
  createProductViaApi,
  expectHtmlPage,
  expectSignedIn,
  firstVisible,
  keyPage,
  newCustomer,
  newPage,
  orderIdOf,
  orderStatus,
  paymentsViaApi,
  placeOrder,
  plainText,
  scenario,
  setStockViaApi,
  signOutButton,
  signUp,
  uniqueEmail,
  waitForText,
} from '../lib/shop.mjs';

after(closeBrowser);

/** Turns the browser's own validation off for the form holding `button`. */
async function skipBrowserValidation(button) {
  await button.evaluate((el) => {
    if (el.form) el.form.noValidate = true;
  });
}

/** What the page says of each field marked invalid (`aria-invalid`, its `aria-describedby`). */
async function fieldErrors(page) {
  return page.evaluate(() =>
    [...document.querySelectorAll('[aria-invalid="true"]')]
      .map((field) => {
        const ids = (field.getAttribute('aria-describedby') ?? '').split(/\s+/).filter(Boolean);
        const label = field.labels?.[0]?.textContent?.trim() ?? field.name;
        const said = ids.map((id) => document.getElementById(id)?.textContent?.trim() ?? '');
        return `${label}: ${said.join(' ')}`;
      })
      .join(' / '),
  );
}

/** The browser's own complaint about a field when its form lets the browser check it ('' when
 * the field is valid, or the form is `novalidate`). */
async function browserComplaint(field) {
  return field.evaluate((el) =>
    el.form && !el.form.noValidate && el.validity && !el.validity.valid ? el.validationMessage : '',
  );
}

const UUID = /[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}/i;

/** A message for a person: it names things by name, not by id. */
function assertHumanMessage(message, what) {
  assert.doesNotMatch(message, UUID, `${what}: the message shows an id, not a name: ${message}`);
}

scenario('g. an empty sign-up form shows errors and creates nothing', async () => {
  const page = await newPage('desktop');
  await page.goto('/signup');
  const create = page.getByRole('button', { name: 'Create account', exact: true });

  // The browser's own checks first, if the form has them (`required` without `novalidate`):
  // nothing is sent.
  const complaint = await browserComplaint(page.getByLabel('Email', { exact: true }));
  await create.click();
  await expectHtmlPage(page, 'the empty sign-up form sent');
  if (complaint) {
    assert.equal(new URL(page.url()).pathname, '/signup');
    console.log(`the browser refuses the empty form itself: ${JSON.stringify(complaint)}`);
  }

  // Sent anyway: the server's messages, and no account.
  const email = uniqueEmail('empty');
  await page.goto('/signup');
  await page.getByLabel('Email', { exact: true }).fill(email);
  await skipBrowserValidation(create);
  await create.click();
  await expectHtmlPage(page, 'the sign-up form with an email only');
  await page.getByRole('alert').first().waitFor();
  const errors = `${await alertText(page)} ${await fieldErrors(page)}`;
  console.log(`sign-up errors: ${JSON.stringify(errors)}`);
  assert.match(errors, /name|password|required|empty|missing/i, 'the errors name what is missing');
  assert.equal(await signOutButton(page).count(), 0, 'not signed in');
  await keyPage(page, 'signup-errors', { twin: 'resize' });

  // Empty altogether, sent anyway.
  await page.goto('/signup');
  await skipBrowserValidation(create);
  await create.click();
  await page.getByRole('alert').first().waitFor();
  assert.equal(await signOutButton(page).count(), 0, 'not signed in');

  // The email is still free: no account was made with it.
  const created = await api('POST', '/api/v1/users', {
    body: { email, password: 'correct horse battery staple', name: 'Probe' },
  });
  assert.equal(created.status, 201, `${email} was not taken: ${created.text.slice(0, 200)}`);
});

scenario('g. a huge quantity on a product page: a clear message, the cart unchanged', async () => {
  const product = await createProductViaApi({ stock: 20 });
  const page = await newPage('desktop');
  await signUp(page, newCustomer('huge'));
  await page.goto(`/products/${product.id}`);

  const quantity = page.getByLabel('Quantity', { exact: true });
  const add = page.getByRole('button', { name: 'Add to cart', exact: true });
  await quantity.fill('100000');
  const complaint = await browserComplaint(quantity);
  await add.click();
  await expectHtmlPage(page, 'quantity 100000 added');
  if (complaint) console.log(`the browser refuses 100000 itself: ${JSON.stringify(complaint)}`);

  await page.goto(`/products/${product.id}`);
  await quantity.fill('100000');
  await skipBrowserValidation(add);
  await add.click();
  await page.getByRole('alert').first().waitFor();
  const message = await alertText(page);
  console.log(`quantity 100000: ${JSON.stringify(message)}`);
  assert.match(message, /quantit|at most|maximum|too many|\b99\b|stock|available|only/i, 'the message says what is wrong');
  assertHumanMessage(message, 'quantity 100000');
  await keyPage(page, 'quantity-too-large', { twin: 'resize' });

  await page.goto('/cart');
  await expectSignedIn(page, '/cart');
  assert.equal(await cartLine(page, product.name).count(), 0, 'the cart has no line for it');
  assert.ok(!(await plainText(page)).includes(product.name), 'the cart does not mention it');
});

scenario('g. sold out between the product page and checkout: a clear message, no money taken', async () => {
  const product = await createProductViaApi({ stock: 1 });
  const page = await newPage('desktop');
  await signUp(page, newCustomer('soldout'));
  await page.goto(`/products/${product.id}`);
  await addToCart(page, 1);
  await assertNoAlert(page, 'adding the last unit to the cart');
  await page.goto('/checkout');
  await page.getByLabel('Card number', { exact: true }).waitFor();

  // Meanwhile the last unit goes (the admin counts the stock again: none).
  await setStockViaApi(product.id, 0);

  await placeOrder(page, CARDS.approved);
  await expectHtmlPage(page, 'Place order with the last unit gone');
  const outcome = await firstVisible([orderStatus(page), page.getByRole('alert')], {
    timeout: 30_000,
    what: 'the order page or a message at checkout',
  });
  const orderId = orderIdOf(page);
  if (outcome === 0 && orderId) {
    // Taken, then cancelled by the checkout: the reason is given, and nothing was captured.
    const status = await waitForText(orderStatus(page), /\bcancell?ed\b/i, { timeout: 30_000 });
    const text = `${status} ${(await page.locator('main').first().textContent()) ?? ''}`;
    assert.match(text, /out of stock|sold out|no longer (available|in stock)|not enough/i, 'the reason says the stock ran out');
    assertHumanMessage(status, 'the cancelled order');
    await keyPage(page, 'order-out-of-stock');
    const payments = await paymentsViaApi(orderId);
    for (const payment of payments) {
      assert.equal(payment.captured.amount, 0, `no money captured: ${JSON.stringify(payment)}`);
      assert.notEqual(payment.state, 'captured');
    }
  } else {
    // Refused at checkout, with the reason; no order page.
    const message = await alertText(page);
    console.log(`checkout refused: ${JSON.stringify(message)}`);
    assert.match(message, /out of stock|sold out|no longer (available|in stock)|not enough|available|stock/i);
    assertHumanMessage(message, 'checkout refused');
    assert.equal(orderId, null);
    await keyPage(page, 'checkout-out-of-stock', { twin: 'resize' });
  }
});
