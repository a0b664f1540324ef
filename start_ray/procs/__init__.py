"""The processes a rank starts and owns: the process tree, the watchdog, the helpers, signals, and the driver."""
