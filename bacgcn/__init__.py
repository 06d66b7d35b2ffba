"""A tested reproduction of BAC-GCN: Background-Aware CLIP-GCN for unsupervised multi-label classification

Modules:

- `bacgcn.bench`: Extraction throughput against a one-image-per-forward loop, COCO-scale training on a cache read from disk with its peak memory, and how both costs grow; every figure labelled with its device.
- `bacgcn.captioner`: Write BAC-GCN's caption files (six captions and six re-captions per image) with a local BLIP-2: batched, resumable, shardable across processes, in the authors' released format.
- `bacgcn.clip`: A frozen open_clip ViT that returns BAC-GCN's image features (patch embeddings $P$, global embeddings $g$, $g^H$, $g^{H^c}$, the [cls] attention map) and prompt-ensemble text embeddings.
- `bacgcn.features`: Extract CLIP features once into resumable, memory-mapped fp16 arrays; read them back without loading the dataset into memory.
- `bacgcn.shard`: Row I/O on the feature cache that keeps memory flat, a uint8 pipeline that decodes, normalises and runs CLIP on the device in bf16, and `torchrun` sharding merged into one cache."""

__version__ = "0.1.0"
