"""Neural networks of SA-HMR: plain ``nn.Module``s with typed outputs, no pre- or post-processing."""
