// The browser tests' helpers: Debian's Chromium driven by playwright-core, phone and desktop
// pages, screenshots, the accessibility check (axe-core), sign-up and sign-in through the pages,
// polling waits, and a small client of the shop's public API for set-up that is not the
// subject of a scenario (an admin's token, a product with a known stock).
//
// Environment (scripts/browser-test sets it): BASE_URL (the gateway), ADMIN_EMAIL,
// ADMIN_PASSWORD, SCREENSHOT_DIR (default target/browser-tests/screenshots/ under the
// repository), CHROMIUM_PATH (default /usr/bin/chromium). Playwright never downloads a browser.

import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';

import { chromium } from 'playwright-core';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const PACKAGE_ROOT = path.resolve(HERE, '..');
const REPO_ROOT = path.resolve(PACKAGE_ROOT, '../..');

export const BASE_URL = (process.env.BASE_URL ?? 'http://127.0.0.1:8080').replace(/\/+$/, '');
export const ADMIN_EMAIL = process.env.ADMIN_EMAIL ?? '';
export const ADMIN_PASSWORD = process.env.ADMIN_PASSWORD ?? '';
export const SCREENSHOT_DIR = path.resolve(
  REPO_ROOT,
  process.env.SCREENSHOT_DIR ?? 'target/browser-tests/screenshots',
);
const CHROMIUM_PATH = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
const AXE_PATH = path.join(PACKAGE_ROOT, 'node_modules/axe-core/axe.min.js');

/** The test cards of the simulated payment provider (docs/web.md, docs/payment.md). */
export const CARDS = {
  approved: '4242 4242 4242 4242',
  declined: '4000 0000 0000 0002',
  insufficientFunds: '4000 0000 0000 9995',
  late: '4000 0000 0000 0119',
};

// How long a web-first wait waits by default (a debug build on a shared 2-core machine).
export const WAIT_MS = 15_000;

// ---------------------------------------------------------------------------------------------
// The browser

// Chromium as this machine needs it: without the background-networking flags its own
// connections (to Google's hosts) are refused by the closed network, many at a time.
// Playwright's launch() gives every run a fresh, empty user data dir of its own (a temp dir
// removed on close): nothing carries over between runs.
const LAUNCH_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

const VIEWPORTS = {
  phone: {
    viewport: { width: 390, height: 844 },
    deviceScaleFactor: 2,
    isMobile: true,
    hasTouch: true,
  },
  desktop: { viewport: { width: 1280, height: 800 } },
};

let browser = null;
/** The contexts of the running test, closed when it ends. */
const openContexts = new Set();
/** page -> 'phone' | 'desktop'. */
const pageKinds = new WeakMap();
let currentTest = '';
/** Pages axe is being injected into (the refusal by a CSP is expected, not the page's error). */
const injecting = new WeakSet();

export async function launchBrowser() {
  if (!fs.existsSync(CHROMIUM_PATH)) {
    throw new Error(
      `no Chromium at ${CHROMIUM_PATH}: scripts/browser-test installs Debian's chromium`,
    );
  }
  return chromium.launch({
    executablePath: CHROMIUM_PATH,
    headless: true,
    args: LAUNCH_ARGS,
    timeout: 60_000,
  });
}

async function getBrowser() {
  if (!browser || !browser.isConnected()) browser = await launchBrowser();
  return browser;
}

/** Closes the browser (the last test file's `after`). */
export async function closeBrowser() {
  for (const context of openContexts) await context.close().catch(() => {});
  openContexts.clear();
  if (browser) await browser.close().catch(() => {});
  browser = null;
}

function kindOf(width) {
  if (width === 'phone' || width === 390) return 'phone';
  if (width === 'desktop' || width === 1280 || width === undefined) return 'desktop';
  throw new Error(`newPage: 'phone' (390) or 'desktop' (1280), not ${width}`);
}

/**
 * A page in a new browser context (its own cookies): `phone` (390x844, device scale 2, mobile,
 * touch) or `desktop` (1280x800); 390 and 1280 are accepted too. `storageState` carries another
 * context's cookies over (the same signed-in session at the other width).
 */
export async function newPage(width = 'desktop', { storageState } = {}) {
  const kind = kindOf(width);
  const context = await (await getBrowser()).newContext({
    ...VIEWPORTS[kind],
    locale: 'en-US',
    baseURL: BASE_URL,
    storageState,
  });
  openContexts.add(context);
  context.on('close', () => openContexts.delete(context));
  const page = await context.newPage();
  pageKinds.set(page, kind);
  page.setDefaultTimeout(WAIT_MS);
  page.setDefaultNavigationTimeout(30_000);
  page.on('pageerror', (error) =>
    console.log(`[${currentTest}] ${kind} page error at ${page.url()}: ${error.message}`),
  );
  page.on('console', (message) => {
    if (message.type() === 'error' && !injecting.has(page)) {
      console.log(`[${currentTest}] ${kind} console error at ${page.url()}: ${message.text()}`);
    }
  });
  return page;
}

/**
 * A test (node:test) whose pages are closed when it ends; when it fails, every page still open
 * is saved as `FAILED-<test>-<n>-<kind>.png` first, to see what the browser saw.
 */
export function scenario(name, fn, { timeout = 180_000 } = {}) {
  return test(name, { timeout }, async (t) => {
    currentTest = name;
    try {
      await fn(t);
    } catch (error) {
      let n = 0;
      for (const context of openContexts) {
        for (const page of context.pages()) {
          n += 1;
          const file = `FAILED-${slug(name)}-${n}`;
          await screenshot(page, file).catch(() => {});
          console.log(`failure screenshot of ${page.url()}: ${file}-${pageKinds.get(page)}.png`);
        }
      }
      throw error;
    } finally {
      for (const context of [...openContexts]) await context.close().catch(() => {});
    }
  });
}

function slug(text) {
  return text
    .toLowerCase()
    .replace(/[^a-z0-9]+/g, '-')
    .replace(/^-|-$/g, '')
    .slice(0, 60);
}

// ---------------------------------------------------------------------------------------------
// Screenshots and the accessibility check

/** A full-page PNG: `$SCREENSHOT_DIR/<name>-<phone|desktop>.png`; answers the path. */
export async function screenshot(page, name) {
  fs.mkdirSync(SCREENSHOT_DIR, { recursive: true });
  const file = path.join(SCREENSHOT_DIR, `${name}-${pageKinds.get(page) ?? 'desktop'}.png`);
  await page.screenshot({ path: file, fullPage: true });
  return file;
}

const A11Y_TAGS = ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa'];
const FAILING_IMPACTS = new Set(['serious', 'critical']);

/**
 * Runs axe-core (WCAG 2.0/2.1 A and AA rules) on the page as it is; prints every violation and
 * fails on any of impact serious or critical.
 */
export async function checkA11y(page, name) {
  injecting.add(page);
  try {
    await page.addScriptTag({ path: AXE_PATH });
  } catch {
    // below
  } finally {
    injecting.delete(page);
  }
  // A Content-Security-Policy without inline scripts stops the tag; evaluation through the
  // DevTools protocol is not subject to it.
  if (!(await page.evaluate(() => typeof window.axe !== 'undefined'))) {
    await page.evaluate(fs.readFileSync(AXE_PATH, 'utf8'));
  }
  const violations = await page.evaluate(async (tags) => {
    const results = await window.axe.run(document, { runOnly: { type: 'tag', values: tags } });
    return results.violations.map((v) => ({
      id: v.id,
      impact: v.impact,
      help: v.help,
      targets: v.nodes.slice(0, 3).map((node) => node.target.join(' ')),
      count: v.nodes.length,
    }));
  }, A11Y_TAGS);
  const kind = pageKinds.get(page) ?? 'desktop';
  for (const v of violations) {
    console.log(
      `a11y ${name} (${kind}, ${page.url()}): ${v.id} [${v.impact}] ${v.help} — ` +
        `${v.count} node(s): ${v.targets.join(' | ')}`,
    );
  }
  const failing = violations.filter((v) => FAILING_IMPACTS.has(v.impact));
  assert.equal(
    failing.length,
    0,
    `accessibility: ${name} (${kind}, ${page.url()}) has serious or critical violations:\n` +
      failing
        .map((v) => `  ${v.id} [${v.impact}] ${v.help} at ${v.targets.join(' | ')}`)
        .join('\n'),
  );
}

/**
 * A key page of a scenario: screenshot and accessibility check of the page as it is, then the
 * same at the other width. `twin: 'reload'` (default) opens the page's URL in a new context of
 * the other kind carrying this one's cookies (the same session); `'resize'` (a page that is the
 * answer to a POST, which a new GET would not show) only resizes this page to the other
 * viewport for the screenshot and the check, and back; `false` skips the other width. `status`
 * is what the page's URL answers when opened again (200; 403 for a refusal page).
 */
export async function keyPage(page, name, { twin = 'reload', status = 200 } = {}) {
  await screenshot(page, name);
  await checkA11y(page, name);
  if (!twin) return;
  const kind = pageKinds.get(page) ?? 'desktop';
  const other = kind === 'phone' ? 'desktop' : 'phone';
  if (twin === 'resize') {
    const size = page.viewportSize();
    await page.setViewportSize(VIEWPORTS[other].viewport);
    pageKinds.set(page, other);
    try {
      await screenshot(page, name);
      await checkA11y(page, name);
    } finally {
      pageKinds.set(page, kind);
      await page.setViewportSize(size);
    }
    return;
  }
  const twinPage = await newPage(other, { storageState: await page.context().storageState() });
  try {
    const response = await twinPage.goto(page.url());
    assert.equal(response?.status(), status, `${name}: ${page.url()} at the other width`);
    await screenshot(twinPage, name);
    await checkA11y(twinPage, name);
  } finally {
    await twinPage.context().close();
  }
}

// ---------------------------------------------------------------------------------------------
// Waits (web-first: they poll what the page shows, never sleep a fixed time)

/** Polls until `probe()` answers a truthy value (which is returned), or fails with `what`. */
export async function eventually(what, probe, { timeout = WAIT_MS, interval = 100 } = {}) {
  const deadline = Date.now() + timeout;
  let last;
  for (;;) {
    try {
      last = await probe();
      if (last) return last;
    } catch (error) {
      last = error;
    }
    if (Date.now() > deadline) {
      throw new Error(`timed out after ${timeout} ms waiting for ${what} (last: ${describe(last)})`);
    }
    await new Promise((resolve) => setTimeout(resolve, interval));
  }
}

function describe(value) {
  if (value instanceof Error) return value.message.split('\n')[0];
  return JSON.stringify(value);
}

/** Waits until the locator's text matches `pattern`; answers the text. */
export async function waitForText(locator, pattern, { timeout = WAIT_MS } = {}) {
  let text = '';
  await eventually(
    `text matching ${pattern} in ${locator}`,
    async () => {
      text = ((await locator.first().textContent({ timeout: 1_000 })) ?? '').trim();
      return pattern.test(text) ? text : false;
    },
    { timeout },
  ).catch((error) => {
    throw new Error(`${error.message}; the text was ${JSON.stringify(text)}`);
  });
  return text;
}

/** The first of several locators to become visible: answers its index. */
export async function firstVisible(locators, { timeout = WAIT_MS, what = 'one of the outcomes' } = {}) {
  return eventually(
    what,
    async () => {
      for (const [i, locator] of locators.entries()) {
        if (await locator.first().isVisible()) return { index: i };
      }
      return false;
    },
    { timeout },
  ).then((found) => found.index);
}

/** Fails unless the browser shows an HTML page (not, say, a bare JSON error body). */
export async function expectHtmlPage(page, what) {
  await page.waitForLoadState('load');
  const type = await page.evaluate(() => document.contentType);
  if (type !== 'text/html') {
    const body = ((await page.locator('body').textContent()) ?? '').slice(0, 300);
    throw new Error(`${what}: the browser got ${type}, not a page, at ${page.url()}: ${body}`);
  }
}

/** Every `role=alert` text on the page, joined (what went wrong, as the page says it). */
export async function alertText(page) {
  const texts = await page.getByRole('alert').allTextContents();
  return texts.map((t) => t.trim()).filter(Boolean).join(' / ');
}

/** Fails if the page shows an error alert. */
export async function assertNoAlert(page, where) {
  const alerts = await alertText(page);
  assert.equal(alerts, '', `${where}: the page shows an error: ${alerts}`);
}

// ---------------------------------------------------------------------------------------------
// Accounts

/** A unique email per call (tests share one shop). */
export function uniqueEmail(tag = 'customer') {
  return `${tag}-${Date.now().toString(36)}-${crypto.randomBytes(4).toString('hex')}@example.com`;
}

/** A new customer's details: a unique email, a name and a long password. */
export function newCustomer(tag = 'customer') {
  return {
    name: `Test ${tag} ${crypto.randomBytes(2).toString('hex')}`,
    email: uniqueEmail(tag),
    password: `correct horse ${crypto.randomBytes(6).toString('hex')}`,
  };
}

export function admin() {
  assert.ok(ADMIN_EMAIL && ADMIN_PASSWORD, 'ADMIN_EMAIL and ADMIN_PASSWORD are set');
  return { email: ADMIN_EMAIL, password: ADMIN_PASSWORD };
}

export const signOutButton = (page) => page.getByRole('button', { name: 'Sign out', exact: true });

/** Fails unless the header shows the Sign out button. */
export async function expectSignedIn(page, where = page.url()) {
  await signOutButton(page)
    .waitFor({ state: 'visible' })
    .catch(async () => {
      throw new Error(
        `${where}: not signed in (no Sign out button); at ${page.url()}; alerts: ${await alertText(page)}`,
      );
    });
}

/** Signs up through /signup (and so is signed in). */
export async function signUp(page, { name, email, password }) {
  await page.goto('/signup');
  await page.getByLabel('Name', { exact: true }).fill(name);
  await page.getByLabel('Email', { exact: true }).fill(email);
  await page.getByLabel('Password', { exact: true }).fill(password);
  await page.getByRole('button', { name: 'Create account', exact: true }).click();
  const outcome = await firstVisible([signOutButton(page), page.getByRole('alert')], {
    what: 'signed in after sign-up, or an error',
  });
  if (outcome !== 0) throw new Error(`sign-up of ${email} refused: ${await alertText(page)}`);
}

/** Signs in through /signin (`next` is the path to return to). */
export async function signIn(page, { email, password }, { next } = {}) {
  await page.goto(next ? `/signin?next=${encodeURIComponent(next)}` : '/signin');
  await fillSignIn(page, { email, password });
}

/** Fills and sends the sign-in form the page shows; waits until signed in. */
export async function fillSignIn(page, { email, password }) {
  await page.getByLabel('Email', { exact: true }).fill(email);
  await page.getByLabel('Password', { exact: true }).fill(password);
  await page.getByRole('button', { name: 'Sign in', exact: true }).click();
  const outcome = await firstVisible([signOutButton(page), page.getByRole('alert')], {
    what: 'signed in, or an error',
  });
  if (outcome !== 0) throw new Error(`sign-in of ${email} refused: ${await alertText(page)}`);
}

export async function signOut(page) {
  await signOutButton(page).click();
  await page.getByRole('link', { name: 'Sign in', exact: true }).first().waitFor();
}

// ---------------------------------------------------------------------------------------------
// Shopping through the pages

/** Searches from the header's search form; the results page is shown. */
export async function headerSearch(page, query) {
  const search = page
    .getByRole('search')
    .filter({ has: page.getByLabel('Search products', { exact: true }) })
    .first();
  await search.getByLabel('Search products', { exact: true }).fill(query);
  await Promise.all([
    page.waitForURL((url) => url.pathname === '/products'),
    search.getByRole('button', { name: 'Search', exact: true }).click(),
  ]);
}

/** The stock text of the open product page: In stock, Only N left or Sold out (or null). */
export async function stockText(page) {
  const main = page.locator('main');
  const text = (await main.count()) ? await main.first().textContent() : await page.locator('body').textContent();
  const match = (text ?? '').match(/In stock|Only \d+ left|Sold out/i);
  return match ? match[0] : null;
}

/** Adds `quantity` of the product whose page is open; waits for the outcome. */
export async function addToCart(page, quantity = 1) {
  await page.getByLabel('Quantity', { exact: true }).fill(String(quantity));
  await page.getByRole('button', { name: 'Add to cart', exact: true }).click();
  await page.waitForLoadState('load');
}

/** Fills and sends the checkout form (on /checkout); answers once the page changed. */
export async function placeOrder(page, card, { month = '12', year = '2040', cvc = '123' } = {}) {
  await page.getByLabel('Card number', { exact: true }).fill(card);
  await fillOrSelect(page.getByLabel('Expiry month', { exact: true }), month);
  await fillOrSelect(page.getByLabel('Expiry year', { exact: true }), year);
  await page.getByLabel('CVC', { exact: true }).fill(cvc);
  await page.getByRole('button', { name: 'Place order', exact: true }).click();
}

/** A text field or a select (the contract names the label, not the control). */
export async function fillOrSelect(locator, value) {
  const tag = await locator.evaluate((el) => el.tagName.toLowerCase());
  if (tag === 'select') {
    const options = await locator.locator('option').evaluateAll((os) =>
      os.map((o) => ({ value: o.value, label: o.textContent.trim() })),
    );
    const wanted = String(value);
    const same = (a, b) => a.toLowerCase() === b.toLowerCase();
    const option =
      options.find((o) => same(o.value, wanted) || same(o.label, wanted)) ??
      options.find((o) => Number(o.value) === Number(wanted) || Number(o.label) === Number(wanted)) ??
      options.find((o) => o.label.toLowerCase().includes(wanted.toLowerCase()));
    assert.ok(option, `no option ${wanted} in ${JSON.stringify(options)}`);
    await locator.selectOption(option.value);
  } else {
    await locator.fill(String(value));
  }
}

/** The order id of an `/orders/{id}` page. */
export function orderIdOf(page) {
  const match = new URL(page.url()).pathname.match(/^\/orders\/([^/]+)$/);
  return match ? match[1] : null;
}

// ---------------------------------------------------------------------------------------------
// The public API, for set-up and for checking what the pages do not show

export async function api(method, urlPath, { token, body, headers = {} } = {}) {
  const response = await fetch(`${BASE_URL}${urlPath}`, {
    method,
    headers: {
      ...(body !== undefined ? { 'content-type': 'application/json' } : {}),
      ...(token ? { authorization: `Bearer ${token}` } : {}),
      ...headers,
    },
    body: body !== undefined ? JSON.stringify(body) : undefined,
  });
  const text = await response.text();
  let json = null;
  try {
    json = text ? JSON.parse(text) : null;
  } catch {
    json = null;
  }
  return { status: response.status, json, text, headers: response.headers };
}

async function apiOk(method, urlPath, options) {
  const answer = await api(method, urlPath, options);
  assert.ok(
    answer.status >= 200 && answer.status < 300,
    `${method} ${urlPath}: ${answer.status} ${answer.text.slice(0, 500)}`,
  );
  return answer.json;
}

/** A fresh access token of the admin (the shop under test issues short-lived ones). */
export async function adminToken() {
  const { email, password } = admin();
  // The login route is rate limited per client: one retry after its window.
  for (let attempt = 0; ; attempt += 1) {
    const answer = await api('POST', '/api/v1/sessions', { body: { email, password } });
    if (answer.status === 429 && attempt < 5) {
      await new Promise((resolve) => setTimeout(resolve, 1_000));
      continue;
    }
    assert.equal(answer.status, 200, `admin login: ${answer.status} ${answer.text.slice(0, 300)}`);
    return answer.json.access_token;
  }
}

export async function listProducts(query = '') {
  return (await apiOk('GET', `/api/v1/products${query}`)).items;
}

/** Creates a product through the API with `stock` units; answers it. */
export async function createProductViaApi({ name, stock = 10, amount = 1250 } = {}) {
  const token = await adminToken();
  const categories = await apiOk('GET', '/api/v1/categories');
  const categoryList = Array.isArray(categories) ? categories : categories.items;
  assert.ok(categoryList?.length, 'the shop has categories');
  const [sample] = await listProducts('?limit=1');
  const currency = sample?.price?.currency ?? 'EUR';
  const sku = `BT-${Date.now().toString(36)}-${crypto.randomBytes(3).toString('hex')}`.toUpperCase();
  return apiOk('POST', '/api/v1/products', {
    token,
    body: {
      sku,
      name: name ?? `Browser test item ${sku}`,
      description: 'Made by the browser tests.',
      price: { amount, currency },
      category_id: categoryList[0].id,
      stock,
    },
  });
}

export async function setStockViaApi(productId, onHand) {
  return apiOk('PUT', `/api/v1/products/${productId}/stock`, {
    token: await adminToken(),
    body: { on_hand: onHand },
  });
}

export async function stockViaApi(productId) {
  return apiOk('GET', `/api/v1/products/${productId}/stock`, { token: await adminToken() });
}

/** The payments of an order, as the admin sees them. */
export async function paymentsViaApi(orderId) {
  const answer = await apiOk('GET', `/api/v1/payments?order_id=${orderId}`, {
    token: await adminToken(),
  });
  return Array.isArray(answer) ? answer : (answer?.items ?? []);
}

export async function orderViaApi(orderId) {
  return apiOk('GET', `/api/v1/orders/${orderId}`, { token: await adminToken() });
}

/** Products that can be bought now, with at least `min` units, from the public API. */
export async function productsInStock(min = 5) {
  const items = await listProducts('?limit=50&in_stock=true');
  return items.filter((p) => p.active !== false && p.available >= min);
}

// ---------------------------------------------------------------------------------------------
// Small things the scenarios share

/** The live status of an order page (`#order-status`, role=status). */
export const orderStatus = (page) => page.locator('#order-status');

/** The cart line of a product, by its quantity field (`Quantity for {name}`). */
export const cartLine = (page, name) => page.getByLabel(`Quantity for ${name}`, { exact: true });

/** Minor units as the pages write them: `12.50` (a page may group thousands: compare with
 * `plainText`). */
export const money = (amount) => (amount / 100).toFixed(2);

/** A page's text with thousands separators and runs of white space taken out. */
export async function plainText(page) {
  const text = (await page.locator('body').textContent()) ?? '';
  return text.replace(/(\d),(\d{3})/g, '$1$2').replace(/\s+/g, ' ');
}

/** Waits for the order page after Place order; answers the order id. */
export async function waitForOrderPage(page, { timeout = 30_000 } = {}) {
  const outcome = await firstVisible([orderStatus(page), page.getByRole('alert')], {
    timeout,
    what: 'the order page, or an error at checkout',
  });
  if (outcome !== 0 || !orderIdOf(page)) {
    throw new Error(`no order page after Place order (at ${page.url()}): ${await alertText(page)}`);
  }
  return orderIdOf(page);
}
