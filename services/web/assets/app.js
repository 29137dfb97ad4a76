// micromart storefront: progressive enhancement only; every page works without it.
"use strict";

// A form marked data-once submits once: a double click or a second Enter does not send it
// again (the checkout's attempt key makes a repeat harmless anyway).
document.addEventListener("submit", (event) => {
  const form = event.target;
  if (!(form instanceof HTMLFormElement) || !form.hasAttribute("data-once")) return;
  if (form.dataset.sent === "1") {
    event.preventDefault();
    return;
  }
  form.dataset.sent = "1";
  form.setAttribute("aria-busy", "true");
  // Disabled after this event, so the button's own value still goes with the form.
  setTimeout(() => {
    for (const button of form.querySelectorAll("button[type=submit]")) button.disabled = true;
  }, 0);
});

// An order's live status: the order's event stream says when it changed; the panel is then
// fetched again as the server renders it, so the words are the server's.
function followOrder(panel) {
  const status = panel.querySelector("[data-live]");
  if (!status || !window.EventSource) return;
  const source = new EventSource(status.dataset.live);
  const fragment = status.dataset.fragment;
  let refreshing = Promise.resolve();
  source.addEventListener("status", () => {
    refreshing = refreshing.then(async () => {
      const response = await fetch(fragment, { headers: { accept: "text/html" } });
      if (!response.ok) return;
      const next = new DOMParser().parseFromString(await response.text(), "text/html");
      const current = panel.querySelector("#order-status");
      const fresh = next.querySelector("#order-status");
      if (!current || !fresh) return;
      // The live region stays the same element, so screen readers announce its new text.
      current.innerHTML = fresh.innerHTML;
      current.className = fresh.className;
      if (!fresh.hasAttribute("data-live")) current.removeAttribute("data-live");
      fresh.replaceWith(current);
      panel.replaceChildren(...next.body.childNodes);
      if (!current.hasAttribute("data-live")) source.close();
    }).catch(() => {});
  });
}

const live = document.getElementById("order-live");
if (live) followOrder(live);
