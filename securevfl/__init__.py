"""securevfl: vertical federated learning whose cross-party messages can travel as CKKS ciphertexts.

Layers import downwards only: ``securevfl`` -> ``securevfl.protocols`` (folder ``protocols/``)
-> ``securevfl.crypto`` (folder ``crypto/``).
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]
