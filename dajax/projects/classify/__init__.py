"""The classification study: do depth maps help classify images? (features + MLP heads)."""
