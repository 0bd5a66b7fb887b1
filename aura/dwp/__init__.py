"""Calls from Aura to DWP services: the outbound headers, and optional AgentTask reports."""
