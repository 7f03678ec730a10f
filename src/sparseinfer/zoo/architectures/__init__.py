"""Model architectures in plain PyTorch; the zoo registry (zoo/registry.py) lists them."""
