"""What a run leaves for its user: logs, the typed events and the summary, Ray's logs copied, the cluster's card."""
