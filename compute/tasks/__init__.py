"""Tasks whose answers can be judged exactly."""
