"""quantgym environments: the trading simulator and its data side (numpy only, no torch/SB3/Hydra)."""
