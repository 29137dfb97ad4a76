"""schemathesis hooks for micromart: how to put a JSON-lines body on the wire.

The product import takes `application/x-ndjson` (one JSON document per line), a media type
schemathesis has no serializer for. Loaded through SCHEMATHESIS_HOOKS by scripts/fuzz-api.
"""

import json

import schemathesis


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
