"""From bytes to hashes: decoding (the only Pillow user), hash algorithms, PDQ."""
