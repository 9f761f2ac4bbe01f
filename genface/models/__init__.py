"""Torch modules that diffusers and transformers lack (each a ModelMixin + ConfigMixin).

May import: genface.errors, genface.arguments, genface.hub, genface.identity.
"""
