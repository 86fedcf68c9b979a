"""The stack's local Alertmanager receiver: one readable line per alert, every payload kept."""
