"""Rich renderables built from immutable snapshots."""
