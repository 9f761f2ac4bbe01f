"""Talking-portrait motion: LivePortrait's keypoint-warping renderer and Ditto's audio-to-motion model.

Modules keep the parameter names of the published checkpoints (``digital-avatar/ditto-talkinghead``,
folder ``ditto_pytorch/models``; ``KwaiVGI/LivePortrait`` shares the renderer's module graph).
"""
