"""Redis: connections, every key name, and the one mapping of Redis failures into Aura's errors."""
