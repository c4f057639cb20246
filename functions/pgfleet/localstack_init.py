"""Create pgfleet's AWS resources in LocalStack: `python -m pgfleet.localstack_init`.

`localstack/init/ready.d/pgfleet.sh` runs this inside the LocalStack container once its
services are ready. It calls the same `ensure_resources` that `pgfleet up` calls against moto,
so both create the same table, queues and schedule group. It imports only the standard
library and boto3, which LocalStack's own Python has.
"""

from __future__ import annotations

import sys

from pgfleet.adapters.bootstrap import ensure_resources
from pgfleet.core.settings import get_settings


def main() -> int:
    settings = get_settings()
    if not settings.aws_endpoint_url:
        # Without an endpoint boto3 would create the resources in a real AWS account.
        print("pgfleet: AWS_ENDPOINT_URL is not set; refusing to run against AWS", file=sys.stderr)
        return 2
    for line in ensure_resources(settings):
        print(f"pgfleet: {line} ({settings.aws_endpoint_url})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
