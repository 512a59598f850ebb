"""Client, worker and admin implementations (``client/_sync`` is generated from these)."""
