"""Batch processing: variations, workflow patching, journal, scheduler, fleets, Ray."""
