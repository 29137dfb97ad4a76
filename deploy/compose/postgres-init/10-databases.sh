#!/bin/sh
# Run once by the postgres image's entrypoint, on an empty data volume: one database per
# service, each owned by its own login role with its own password (from deploy/compose/.env),
# and closed to every other role — a service's credentials open its database and no other.
set -eu

for service in identity catalog payment order web; do
  variable="$(printf '%s' "$service" | tr '[:lower:]' '[:upper:]')_DB_PASSWORD"
  eval "password=\${$variable:-}"
  if [ -z "$password" ]; then
    echo "10-databases.sh: $variable is empty; set it in deploy/compose/.env" >&2
    exit 1
  fi
  # psql's :"name" and :'text' quote the identifier and the literal; no value is pasted
  # into the SQL text.
  psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname postgres \
    -v role="micromart_$service" -v password="$password" <<'SQL'
CREATE ROLE :"role" LOGIN PASSWORD :'password';
CREATE DATABASE :"role" OWNER :"role";
REVOKE ALL ON DATABASE :"role" FROM PUBLIC;
SQL
done
