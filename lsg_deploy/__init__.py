"""lsg-deploy: train spiking networks with learnable surrogate gradients, deploy them in fixed point."""

__version__ = "0.1.0"
