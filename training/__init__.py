"""PyTorch training of LSG spiking networks (the seed paper's neuron, tdBN, readout)."""
