"""Kubernetes manifests (kustomize) of the stack and their generator."""
