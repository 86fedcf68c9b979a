# Flower settings shared by docker-compose and the native runner (`--conf=flower/flowerconfig.py`).
# Credentials are not here: Flower reads FLOWER_BASIC_AUTH (user:password) from the environment.
# Flower's /metrics and /healthcheck stay unauthenticated by Flower's design: keep its port private.

import os

# Flower's UI and API can revoke tasks and shut workers down: never serve them without auth.
if not os.environ.get("FLOWER_BASIC_AUTH") and not os.environ.get("FLOWER_AUTH_PROVIDER"):
    raise SystemExit(
        "flower: set FLOWER_BASIC_AUTH=user:password (or an auth provider): Flower's UI and API must not be open"
    )

# Keep task history in memory only; Prometheus holds the long-term view.
persistent = False
max_tasks = 10000
