"""Reading and writing images, video and audio.

May import: genface.errors.
"""

from genface.media._files import check_output_path
from genface.media.audio import load_audio
from genface.media.image import DEFAULT_MAX_PIXELS, load_image, save_image, to_uint8
from genface.media.video import read_video, write_video

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "check_output_path",
    "load_audio",
    "load_image",
    "read_video",
    "save_image",
    "to_uint8",
    "write_video",
]
