"""DINO (TAO `dino` network)."""
