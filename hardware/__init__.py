"""Torch-free deployment side: fixed-point facts, the bundle format, the integer reference.

Nothing here imports torch: it runs in the Lava interpreter and on FPGA designers' machines.
"""
