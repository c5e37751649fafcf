"""Hosted open-model inference: deployments of models whose replicas run on the fleet, and the
OpenAI-compatible gateway in front of them (``gateway``, ``replicas``, ``workers``)."""
