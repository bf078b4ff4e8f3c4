"""Metrics export: the domain's ``Telemetry`` port over prometheus_client."""
