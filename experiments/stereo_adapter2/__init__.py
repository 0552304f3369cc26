"""StereoAdapter-2: the ConvSS2D update operator in a tiny RAFT-Stereo (arXiv 2602.16915)."""
