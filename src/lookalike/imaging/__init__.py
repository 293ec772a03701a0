"""From bytes to hashes: decoding and header facts (the Pillow users), hash algorithms, PDQ."""
