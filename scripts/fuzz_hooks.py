"""schemathesis hooks for micromart, loaded through SCHEMATHESIS_HOOKS by scripts/fuzz-api.

- How to put a JSON-lines body on the wire: the product import takes `application/x-ndjson`
  (one JSON document per line), a media type schemathesis has no serializer for.
- A check that narrows the statuses scripts/schemathesis.toml lets `positive_data_acceptance`
  expect on a few operations to the one reason each may be given (STATE_RULES).
"""

import json
import re

import schemathesis

# In STATE_RULES, a rule whose every reported field must be one of a list of (field, message
# pattern) pairs.
EVERY = object()


@schemathesis.serializer("application/x-ndjson", "application/jsonl")
def ndjson(ctx, value):
    if isinstance(value, bytes):
        return {"data": value}
    if isinstance(value, str):
        return {"data": value.encode("utf-8", "surrogatepass")}
    if isinstance(value, list):
        lines = "\n".join(json.dumps(item) for item in value)
        return {"data": lines.encode("utf-8", "surrogatepass")}
    return {"data": json.dumps(value).encode("utf-8", "surrogatepass")}


# The cart's limits are configuration ([order] max_line_quantity, max_cart_lines), its currency
# the first line's, and stock and sale status catalog's: none is in the schema.
CART_LINE_RULES = {
    409: [("insufficient-stock", None, None)],
    422: [
        ("product-unavailable", None, None),
        ("validation-failed", EVERY, [
            ("quantity", r"must be from 1 to \d+ \(is -?\d+\); remove a line with DELETE"),
            ("quantity", r"the line would hold \d+ units; at most \d+ fit in a line"),
            ("quantity", r"the cart's total would be too large to be paid"),
            ("product_id", r"the cart holds its limit of \d+ products; remove one first"),
            ("product_id", r"the product is priced in \w+ and the cart in \w+; one cart is paid in one currency"),
        ]),
    ],
}

# Why an operation may refuse a request its schema admits: rules about the server's state that
# JSON Schema cannot state. scripts/schemathesis.toml lets `positive_data_acceptance` expect
# these statuses on these operations (and only there); this check narrows each status to its
# documented reason, so that, say, a schema-valid product draft refused for its name is still
# caught although 422 is expected for an unknown category. Each reason is the problem's `code`
# and, for `validation-failed`, the one field and message the rule reports (or, with EVERY,
# the fields and message patterns every reported error must be among).
STATE_RULES = {
    "GET /api/v1/products": {
        400: [("invalid-cursor", None, None)],  # a cursor this server did not issue
        422: [("validation-failed", "category", "no such category")],
    },
    "POST /api/v1/products": {
        422: [("validation-failed", "category_id", "no such category")],
    },
    "PUT /api/v1/products/{id}": {
        412: [("precondition-failed", None, None)],  # If-Match names another version
        422: [("validation-failed", "category_id", "no such category")],
    },
    "POST /api/v1/categories": {
        422: [("validation-failed", "parent_id", "no such category")],
    },
    "PUT /api/v1/categories/{id_or_slug}": {
        422: [
            ("validation-failed", "parent_id", "no such category"),
            ("validation-failed", "parent_id", "must not be the category itself or one of its subcategories"),
        ],
    },
    "POST /api/v1/products/{id}/stock/adjustments": {
        422: [("validation-failed", "delta", "on hand would exceed 1000000000")],
    },
    # Every reported field is one of these rules (a random number usually fails its check
    # digit and a random date is often past, both in one answer).
    "POST /api/v1/payment-methods": {
        422: [
            ("validation-failed", EVERY, [
                ("number", r"is not a valid card number \(check digit\)"),
                ("exp_year", r"the card has expired"),
                ("exp_year", r"must be a four-digit year up to \d{4}"),
                ("cvc", r"must be [34] digits for this card"),
            ]),
        ],
    },
    "PUT /api/v1/cart/lines/{product_id}": CART_LINE_RULES,
    "POST /api/v1/cart/lines": CART_LINE_RULES,
    # A checkout depends on the cart, stock, the key's earlier use and the checkouts in flight.
    "POST /api/v1/orders": {
        409: [
            ("insufficient-stock", None, None),
            ("cart-changed", None, None),
            ("idempotency-key-in-flight", None, None),
        ],
        422: [
            ("cart-empty", None, None),
            ("product-unavailable", None, None),
            ("idempotency-key-reused", None, None),
        ],
        429: [("too-many-checkouts", None, None)],
    },
    "POST /api/v1/orders/{id}/cancel": {
        409: [("order-not-cancellable", None, None)],
    },
    "POST /api/v1/orders/{id}/ship": {
        409: [("order-not-shippable", None, None)],
    },
    "POST /api/v1/payments/{id}/refunds": {
        409: [
            ("payment-not-captured", None, None),
            ("refund-exceeds-refundable", None, None),
            ("idempotency-key-in-flight", None, None),
        ],
        422: [("idempotency-key-reused", None, None)],
    },
}


def _reason_matches(body, rule):
    code, field, message = rule
    if not isinstance(body, dict) or body.get("code") != code:
        return False
    if field is None:
        return True
    if field is EVERY:
        errors = body.get("errors")
        return bool(errors) and all(
            any(
                error.get("field") == allowed_field and re.fullmatch(pattern, error.get("message", ""))
                for allowed_field, pattern in message
            )
            for error in errors
        )
    return body.get("errors") == [{"field": field, "message": message}]


@schemathesis.check
def refusals_of_valid_data_name_a_state_rule(ctx, response, case):
    """A schema-valid request refused with a status STATE_RULES expects names that rule."""
    meta = case.meta
    if meta is None or not meta.generation.mode.is_positive:
        return None
    rules = STATE_RULES.get(case.operation.label, {}).get(response.status_code)
    if not rules:
        return None
    try:
        body = response.json()
    except ValueError:
        body = None
    if not any(_reason_matches(body, rule) for rule in rules):
        raise AssertionError(
            f"Schema-valid data refused with {response.status_code} for a reason the schema "
            f"could state: {response.text[:500]}"
        )
    return None
