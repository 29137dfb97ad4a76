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
