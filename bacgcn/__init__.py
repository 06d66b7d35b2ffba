"""A tested reproduction of BAC-GCN: Background-Aware CLIP-GCN for unsupervised multi-label classification

Modules:

- `bacgcn.clip`: A frozen open_clip ViT that returns BAC-GCN's image features (patch embeddings $P$, global embeddings $g$, $g^H$, $g^{H^c}$, the [cls] attention map) and prompt-ensemble text embeddings.
- `bacgcn.features`: Extract CLIP features once into resumable, memory-mapped fp16 arrays; read them back without loading the dataset into memory."""

__version__ = "0.1.0"
