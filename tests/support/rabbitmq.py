"""The private RabbitMQ node of native/rabbitmq_node.py (the benchmark starts the same one)."""

from __future__ import annotations

from native.rabbitmq_node import RabbitMQNode

__all__ = ["RabbitMQNode"]
