"""ste-opt: resource allocation for split federated fine-tuning at the wireless edge."""
__version__ = "0.1.0"
