"""Alertmanager configuration of the stack: alertmanager.yml, and channels.py for Slack, email and
a generic webhook configured from the environment."""
