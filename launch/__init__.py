"""Running on a Ray cluster: job submission (`rl submit`, `rl jobs`) and cluster start scripts."""
