# Flower settings shared by docker-compose and the native runner (`--conf=flower/flowerconfig.py`).
# Credentials are not here: Flower reads FLOWER_BASIC_AUTH (user:password) from the environment.
# Flower's /metrics and /healthcheck stay unauthenticated by Flower's design: keep its port private.

# Keep task history in memory only; Prometheus holds the long-term view.
persistent = False
max_tasks = 10000
