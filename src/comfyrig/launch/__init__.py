"""Starting, watching and stopping ComfyUI processes."""
