"""Everything about ComfyUI itself: its checkout, flags, API and logs."""
