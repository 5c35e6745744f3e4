"""Command lines: the `tao` launcher and the per-network task runners."""
