"""From hash values to groups: edges, confirmation of fast hashes, keep policies."""
