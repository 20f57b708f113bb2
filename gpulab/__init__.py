"""The lab for lent GPU machines: real ComfyUI, real GPUs, one device call.

Not part of the comfyrig package. Run its modules from the repository root as
``python -m gpulab.NAME`` (``bash gpulab/run_all.sh`` does); see gpulab/README.md.
"""
