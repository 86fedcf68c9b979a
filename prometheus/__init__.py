"""Prometheus configuration of the stack: scrape config, rules and their generators."""
