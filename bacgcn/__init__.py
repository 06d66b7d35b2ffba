"""A tested reproduction of BAC-GCN: Background-Aware CLIP-GCN for unsupervised multi-label classification"""

__version__ = "0.1.0"
