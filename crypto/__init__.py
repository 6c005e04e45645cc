"""CKKS homomorphic-encryption layer (TenSEAL). Knows nothing about federated learning."""
