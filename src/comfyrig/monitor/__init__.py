"""``comfyrig monitor``'s service side: samplers -> immutable snapshots -> sinks."""
