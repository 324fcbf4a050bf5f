"""Versioned indexes: embedding shards, a faiss index of the gallery's global representations and MANIFEST.json
under <index>/v<N>/; <index>/CURRENT names the live version and is written last."""
