"""Traces (OpenTelemetry, optional) and structured logs: what operators see of a session.

Imports nothing of Aura but :mod:`aura.errors`, so any module may use it.
"""
