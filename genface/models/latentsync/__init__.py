"""LatentSync 1.6 / 1.5 (bytedance/LatentSync): its 3-D UNet, published files, audio features and mouth mask."""
