"""The life of one job on one rank: its phases, the one loop that runs them, the seams (contracts), what the ranks agree on, rank 0's part and every other rank's."""
