"""OneFormer nn.Modules: backbone hook-up, pixel decoder, task-conditioned transformer decoder, text encoder (no I/O)."""
