"""Every other rank's part: join (and rejoin), serve, report."""
