"""What every rank agrees on before anything starts: the plan, every rank's probe and software, the placement."""
