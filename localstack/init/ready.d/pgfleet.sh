#!/bin/sh
# LocalStack init hook (READY stage): creates pgfleet's DynamoDB table, SQS queue and
# dead-letter queue, and Scheduler group with the same code `pgfleet up` runs against moto
# (pgfleet.adapters.bootstrap.ensure_resources). Needs the repository's functions/ mounted at
# $PGFLEET_SRC (default /opt/pgfleet/functions); see localstack/README.md.
set -eu

src="${PGFLEET_SRC:-/opt/pgfleet/functions}"
if [ ! -d "$src/pgfleet" ]; then
  echo "pgfleet: $src/pgfleet not found; mount the repository's functions/ at $src" >&2
  exit 1
fi

# LocalStack's own virtualenv has boto3, the only dependency of this step.
python="${PGFLEET_PYTHON:-}"
if [ -z "$python" ]; then
  if [ -x /opt/code/localstack/.venv/bin/python ]; then
    python=/opt/code/localstack/.venv/bin/python
  else
    python=python3
  fi
fi

export AWS_ENDPOINT_URL="${AWS_ENDPOINT_URL:-http://localhost:4566}"
export AWS_DEFAULT_REGION="${AWS_DEFAULT_REGION:-us-east-1}"
export AWS_ACCESS_KEY_ID="${AWS_ACCESS_KEY_ID:-test}"
export AWS_SECRET_ACCESS_KEY="${AWS_SECRET_ACCESS_KEY:-test}"

PYTHONPATH="$src" exec "$python" -m pgfleet.localstack_init
