"""fsnet: FashionSearchNet-v2 image retrieval with attribute manipulation.

The library: config, storage, catalog, model, losses, embedding and index. Importable without a Ray
cluster; nothing in this package starts Ray (the launchers in ``jobs/`` do).
"""

__version__ = "0.1.0"
