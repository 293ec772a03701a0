"""What a scan keeps between runs: the HashStore contract, the SQLite cache, Parquet output."""
