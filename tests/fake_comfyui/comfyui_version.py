# The ComfyUI release this fake imitates (tools read this file to learn the version of a checkout).
__version__ = "0.3.76"
