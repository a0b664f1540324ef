"""What the ranks say to each other over MPI, and what the launcher tells a process through its environment."""
