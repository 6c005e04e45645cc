"""Label-private training: the CKKS key held by the active party or a coordinator.

Passive parties never see a plaintext per-sample gradient: they backpropagate encrypted
gradients through their own Linear/ReLU layers as ciphertext-by-plaintext products and learn
only batch-summed parameter gradients, through masked decryption.
"""
