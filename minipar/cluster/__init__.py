"""Managed clusters: the Cluster API, its state files, and the launchers that start processes."""
