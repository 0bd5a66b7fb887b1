"""The agent run: planners, the approval gate, tools, and the runner that drives a session."""
