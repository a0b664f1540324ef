"""One Ray node: `ray start`, the `ray` imported ahead, the GCS's node table, what differs between Rays, authentication and ports."""
