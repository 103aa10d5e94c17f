"""File formats: images, depth PNGs, videos."""
