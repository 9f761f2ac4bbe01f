"""Torch modules that diffusers and transformers lack (each a ModelMixin + ConfigMixin)."""
